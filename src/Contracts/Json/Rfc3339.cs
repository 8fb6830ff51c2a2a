using System.Globalization;
using System.Text.RegularExpressions;

namespace Propeller.Contracts.Json;

/// <summary>
/// RFC 3339's date-time: a full date and time with its offset, as the original's Go reads times (<c>time.RFC3339</c>).
/// A date alone, a time without an offset or a culture's format (<c>01/02/2026 10:00</c>) is refused: it would be read
/// in some zone the sender did not name (.NET's own parsing took them, the one without an offset as UTC). RFC 3339 also
/// allows a space or a lowercase <c>t</c> between date and time and a lowercase <c>z</c>, which Go refuses; they are
/// taken here (docs/compatibility.md).
/// </summary>
public static partial class Rfc3339
{
    /// <summary>Reads <paramref name="text"/> as an RFC 3339 time, in UTC (PostgreSQL's timestamptz takes only offset 0 from Npgsql).</summary>
    public static bool TryParse(string? text, out DateTimeOffset value)
    {
        value = default;
        if (text is null || !Pattern().IsMatch(text) || !DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed))
        {
            return false;
        }

        value = parsed.ToUniversalTime();
        return true;
    }

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture, 1000)]
    private static partial Regex Pattern();
}
