namespace Propeller.Infrastructure.MartenStore;

/// <summary>PostgreSQL could not be reached within the configured startup attempts.</summary>
public sealed class EventStoreUnavailableException(string message, Exception innerException) : Exception(message, innerException);
