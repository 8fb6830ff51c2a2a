namespace Propeller.Application.EventStore;

/// <summary>What the writer believes about a stream's version; checked before anything is inserted.</summary>
public readonly record struct ExpectedVersion
{
    private const long AnyValue = -2;
    private const long NoStreamValue = 0;

    private ExpectedVersion(long value) => Value = value;

    /// <summary>-2 for any, 0 for "no stream yet", otherwise the exact current version.</summary>
    public long Value { get; }

    /// <summary>Append whatever the current version is.</summary>
    public static ExpectedVersion Any { get; } = new(AnyValue);

    /// <summary>The stream must not exist yet.</summary>
    public static ExpectedVersion NoStream { get; } = new(NoStreamValue);

    public bool IsAny => Value == AnyValue;

    /// <summary>The stream must be exactly at <paramref name="version"/> (0 = must not exist).</summary>
    public static ExpectedVersion Exact(long version)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        return new(version);
    }

    public override string ToString() => Value switch
    {
        AnyValue => "any",
        NoStreamValue => "no stream",
        _ => Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
