namespace Propeller.Contracts.Configuration;

/// <summary>The words the proplet and the proxy read as a boolean setting (spec propeller-edge.md §4.2), any case, and
/// Go's strconv.ParseBool's <c>t</c> and <c>f</c> (the original proxy's settings; they were refused).</summary>
public static class Flags
{
    public static bool IsTrue(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() is "1" or "t" or "true" or "yes" or "on";
    }

    public static bool IsFalse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() is "0" or "f" or "false" or "no" or "off";
    }
}
