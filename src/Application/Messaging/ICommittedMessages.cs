namespace Propeller.Application.Messaging;

/// <summary>
/// Told about outbox messages as soon as the transaction that wrote them committed, so they can be published at once
/// instead of at the relay's next round. Best effort: whatever it does not send stays in the outbox for the relay.
/// </summary>
public interface ICommittedMessages
{
    void Committed(IReadOnlyList<long> outboxIds, IReadOnlyList<OutgoingMessage> messages);
}
