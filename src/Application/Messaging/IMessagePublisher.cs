namespace Propeller.Application.Messaging;

/// <summary>Sends one message to its destination (an MQTT topic); throws when it could not be handed over.</summary>
public interface IMessagePublisher
{
    Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken);
}
