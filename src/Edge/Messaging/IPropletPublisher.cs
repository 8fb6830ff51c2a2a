namespace Propeller.Edge.Messaging;

/// <summary>Publishes a proplet message on <c>m/{tenant}/c/{channel}/{path}</c> at the configured QoS. Completes once
/// the broker has it; while the broker is unreachable it keeps trying until cancelled (results are not lost to a
/// reconnect).</summary>
public interface IPropletPublisher
{
    Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken);
}
