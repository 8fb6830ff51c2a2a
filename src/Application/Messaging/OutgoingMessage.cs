namespace Propeller.Application.Messaging;

/// <summary>A message to send after the business transaction commits (the outbox): where, what, and headers.</summary>
public sealed record OutgoingMessage(string Destination, ReadOnlyMemory<byte> Payload, IReadOnlyDictionary<string, string>? Headers = null);
