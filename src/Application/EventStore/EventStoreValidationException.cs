namespace Propeller.Application.EventStore;

/// <summary>Input the store refuses before touching the database (empty or oversized stream id, no events, ...).</summary>
public sealed class EventStoreValidationException(string message) : ArgumentException(message);
