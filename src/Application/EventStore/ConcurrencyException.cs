namespace Propeller.Application.EventStore;

/// <summary>The stream was not at the version the writer expected. The only exception the store raises for a lost race.</summary>
public sealed class ConcurrencyException : Exception
{
    public ConcurrencyException(string streamId, ExpectedVersion expected, long actual)
        : base($"stream '{streamId}' is at version {actual}, expected {expected}")
    {
        StreamId = streamId;
        Expected = expected;
        Actual = actual;
    }

    public ConcurrencyException(string streamId, ExpectedVersion expected, long actual, string message)
        : base(message)
    {
        StreamId = streamId;
        Expected = expected;
        Actual = actual;
    }

    public string StreamId { get; }

    public ExpectedVersion Expected { get; }

    /// <summary>The stream's version when the append was refused (0 when it did not exist).</summary>
    public long Actual { get; }
}
