using System.Globalization;

namespace Propeller.Contracts.Tasks;

/// <summary>
/// A task's <c>schedule</c> as the original's parser takes it (spec propeller-manager.md §4.2, robfig/cron v3): exactly
/// five fields, minute hour day-of-month month day-of-week, each a comma list of <c>*</c>, <c>?</c>, a number or a name
/// (JAN–DEC, SUN–SAT), a range <c>a-b</c>, any of them with a step <c>/n</c>; an optional <c>CRON_TZ=</c> or <c>TZ=</c>
/// prefix naming a time zone. No seconds, no descriptors (<c>@daily</c>, <c>@every</c>), no <c>L</c>, <c>W</c> or <c>#</c>.
/// </summary>
public static class CronSchedule
{
    public const string Invalid = "invalid cron expression";

    private static readonly string[] Months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

    private static readonly string[] Weekdays = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

    /// <summary>The fields' bounds and names (a name's value is its index plus the field's first value).</summary>
    private static readonly (int Min, int Max, string[] Names)[] Fields = [(0, 59, []), (0, 23, []), (1, 31, []), (1, 12, Months), (0, 6, Weekdays)];

    public static bool IsValid(string? schedule)
    {
        if (string.IsNullOrEmpty(schedule))
        {
            return false;
        }

        // robfig's Parse takes the prefix only at the very start, and the zone runs from the first '=' to the first ' '
        // (strings.Index(spec, " ")): a tab does not end it, a leading space makes "TZ=…" a sixth field.
        var spec = schedule;
        if (spec.StartsWith("CRON_TZ=", StringComparison.Ordinal) || spec.StartsWith("TZ=", StringComparison.Ordinal))
        {
            var space = spec.IndexOf(' ', StringComparison.Ordinal);
            if (space < 0 || !IsLocation(spec[(spec.IndexOf('=', StringComparison.Ordinal) + 1)..space]))
            {
                return false;
            }

            spec = spec[space..];
        }

        // strings.Fields splits on the same white space as char.IsWhiteSpace; getField drops empty list items
        // (strings.FieldsFunc), so "0,,30" is "0,30".
        var fields = spec.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return fields.Length == Fields.Length && fields.Select((field, i) => field.Split(',', StringSplitOptions.RemoveEmptyEntries).All(item => IsItem(item, Fields[i]))).All(ok => ok);
    }

    /// <summary>Go's time.LoadLocation: "" and "UTC" are UTC, "Local" the host's zone, else an IANA name.</summary>
    private static bool IsLocation(string name) =>
        name is "" or "UTC" or "Local" || TimeZoneInfo.TryFindSystemTimeZoneById(name, out _);

    /// <summary><c>*</c>, <c>?</c>, <c>a</c> or <c>a-b</c>, with an optional <c>/step</c> (a lone <c>a/step</c> runs to the field's end).</summary>
    private static bool IsItem(string item, (int Min, int Max, string[] Names) field)
    {
        var slash = item.Split('/');
        if (slash.Length > 2 || (slash.Length == 2 && !(TryNumber(slash[1], out var step) && step > 0)))
        {
            return false;
        }

        // robfig's getRange looks no further than a leading * or ? (before any '-'): "*-5" and "?-x" are the whole range.
        var range = slash[0].Split('-');
        if (range[0] is "*" or "?")
        {
            return true;
        }

        if (range.Length > 2 || !TryValue(range[0], field, out var start))
        {
            return false;
        }

        var end = start;
        if (range.Length == 2 && !TryValue(range[1], field, out end))
        {
            return false;
        }

        return start >= field.Min && end <= field.Max && start <= end;
    }

    private static bool TryValue(string text, (int Min, int Max, string[] Names) field, out long value)
    {
        var name = Array.FindIndex(field.Names, n => n.Equals(text, StringComparison.OrdinalIgnoreCase));
        if (name >= 0)
        {
            value = name + field.Min;
            return true;
        }

        return TryNumber(text, out value);
    }

    /// <summary>
    /// robfig's mustParseInt: Go's strconv.Atoi (a 64-bit int, an optional sign, decimal digits) and not negative. A '-'
    /// sign never passes (a step of -0 is 0), so only '+' is taken.
    /// </summary>
    private static bool TryNumber(string text, out long value) =>
        long.TryParse(text.StartsWith('+') ? text.AsSpan(1) : text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
}
