namespace Propeller.Application.Messaging;

/// <summary>
/// A received message recorded as handled in the same transaction as the events it caused (the transactional inbox):
/// its key (the message's content hash), topic and payload.
/// </summary>
public sealed record InboxReceipt(string Key, string Topic, ReadOnlyMemory<byte> Payload);
