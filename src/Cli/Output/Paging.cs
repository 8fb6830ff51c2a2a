using System.CommandLine;

namespace Propeller.Cli.Output;

/// <summary>
/// <c>--offset</c> and <c>--limit</c> of the list commands, checked as the manager checks them (src/Manager/Http/Paging.cs,
/// and 1-100 for tasks) so that a page it would refuse is a usage error (exit 2) before any request.
/// </summary>
internal static class Paging
{
    public static Option<long> Offset(string what)
    {
        var offset = new Option<long>("--offset") { Description = $"Skip this many {what}", DefaultValueFactory = _ => 0 };
        offset.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<long>() < 0)
            {
                result.AddError("--offset must be 0 or more");
            }
        });
        return offset;
    }

    public static Option<int> Limit(string what, int byDefault, int? max = null)
    {
        var limit = new Option<int>("--limit")
        {
            Description = max is { } most ? $"Show at most this many {what} (1-{most})" : $"Show at most this many {what}",
            DefaultValueFactory = _ => byDefault,
        };
        limit.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<int>();
            if (max is { } most)
            {
                if (value < 1 || value > most)
                {
                    result.AddError($"--limit must be between 1 and {most}");
                }
            }
            else if (value < 1)
            {
                result.AddError("--limit must be 1 or more");
            }
        });
        return limit;
    }

}
