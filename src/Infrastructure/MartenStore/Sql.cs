namespace Propeller.Infrastructure.MartenStore;

/// <summary>Quoting helpers for identifiers that come from configuration (the schema name).</summary>
internal static class Sql
{
    public static string Identifier(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                throw new ArgumentException($"'{name}' is not a valid schema name: use letters, digits and '_' only", nameof(name));
            }
        }

        return "\"" + name + "\"";
    }
}
