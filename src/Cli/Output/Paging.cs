using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace Propeller.Cli.Output;

/// <summary>
/// <c>--offset</c> and <c>--limit</c> of the list commands, checked as the manager checks them (src/Manager/Http/Paging.cs,
/// and 1-100 for tasks) so that a page it would refuse is a usage error (exit 2) before any request.
/// </summary>
internal static class Paging
{
    public static Option<long> Offset(string what) => new("--offset")
    {
        Description = $"Skip this many {what}",
        DefaultValueFactory = _ => 0,
        CustomParser = result => ParseWhole(result, "--offset", 0L, null),
    };

    public static Option<int> Limit(string what, int byDefault, int? max = null) => new("--limit")
    {
        Description = max is { } most ? $"Show at most this many {what} (1-{most})" : $"Show at most this many {what}",
        DefaultValueFactory = _ => byDefault,
        CustomParser = result => ParseWhole(result, "--limit", 1, max),
    };

    /// <summary>
    /// A whole number from <paramref name="min"/> to <paramref name="max"/> (or up), else a parse error naming the range.
    /// A parser rather than a validator: System.CommandLine runs an option's validators even when its value could not be
    /// converted, and reading the value there throws (dotnet/command-line-api#2645): 'abc' crashed the CLI.
    /// </summary>
    public static T ParseWhole<T>(ArgumentResult result, string name, T min, T? max)
        where T : struct, IBinaryInteger<T>
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        var range = max is { } most ? $"between {min} and {most}" : $"{min} or more";
        if (!T.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            result.AddError($"{name} must be a whole number{(max is null ? ", " : " ")}{range}, got '{text}'");
        }
        else if (value < min || (max is { } top && value > top))
        {
            result.AddError($"{name} must be {range}");
        }

        return value;
    }
}
