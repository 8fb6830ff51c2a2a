namespace Propeller.Bench.Support;

/// <summary>The component sources the tests build from (tests/Shared/Components), found above the bench's folder.</summary>
internal static class TestComponents
{
    public static string Find(string fileName)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "Shared", "Components", fileName);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"tests/Shared/Components/{fileName} not found above " + AppContext.BaseDirectory);
    }
}
