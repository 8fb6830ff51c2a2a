namespace Propeller.Contracts.Configuration;

/// <summary>The words the proplet and the proxy read as a boolean setting (spec propeller-edge.md §4.2), any case.</summary>
public static class Flags
{
    public static bool IsTrue(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() is "1" or "true" or "yes" or "on";
    }

    public static bool IsFalse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() is "0" or "false" or "no" or "off";
    }
}
