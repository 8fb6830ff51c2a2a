using Microsoft.Extensions.Logging;

namespace Propeller.Broker;

internal static partial class BrokerLog
{
    [LoggerMessage(7101, LogLevel.Information, "Connected to {Host}:{Port} as '{ClientId}' (session present {SessionPresent}, receive maximum {ReceiveMaximum})")]
    public static partial void Connected(ILogger logger, string host, int port, string clientId, bool sessionPresent, int receiveMaximum);

    [LoggerMessage(7102, LogLevel.Warning, "Connection to {Host}:{Port} lost: {Reason}")]
    public static partial void ConnectionLost(ILogger logger, string host, int port, string reason);

    [LoggerMessage(7103, LogLevel.Warning, "Could not connect to {Host}:{Port} (attempt {Attempt}); retrying in {DelayMs} ms: {Reason}")]
    public static partial void ConnectFailed(ILogger logger, string host, int port, int attempt, long delayMs, string reason);

    [LoggerMessage(7104, LogLevel.Information, "Subscribed {Count} topic filters (session present {SessionPresent})")]
    public static partial void Subscribed(ILogger logger, int count, bool sessionPresent);

    [LoggerMessage(7105, LogLevel.Warning, "The broker refused a subscription: {Reason}")]
    public static partial void SubscribeFailed(ILogger logger, string reason);

    [LoggerMessage(7106, LogLevel.Error, "The message handler failed for a batch starting on {Topic}; the batch is acknowledged")]
    public static partial void HandlerFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(7107, LogLevel.Warning, "The Connected callback failed")]
    public static partial void ConnectedCallbackFailed(ILogger logger, Exception exception);

    [LoggerMessage(7108, LogLevel.Debug, "The broker's quota is exceeded on {Topic}; publishing again in {DelayMs} ms")]
    public static partial void QuotaExceeded(ILogger logger, string topic, long delayMs);

    [LoggerMessage(7109, LogLevel.Debug, "An acknowledgement was not sent (the connection it belongs to is gone; the broker delivers the message again)")]
    public static partial void AcknowledgementDropped(ILogger logger);

    [LoggerMessage(7110, LogLevel.Warning, "The broker refused to remove a stale subscription: {Reason}")]
    public static partial void UnsubscribeFailed(ILogger logger, string reason);

    [LoggerMessage(7112, LogLevel.Debug, "A received message waiting for room in the full receive queue was let go: its connection is gone (the broker delivers it again)")]
    public static partial void DeliveryDropped(ILogger logger);

    [LoggerMessage(7113, LogLevel.Warning, "An acknowledgement failed; the message stays unacknowledged (the broker delivers it again on the next connection)")]
    public static partial void AcknowledgementFailed(ILogger logger, Exception exception);

    [LoggerMessage(7114, LogLevel.Error, "The loop handing received messages to the handler failed; starting it again and reconnecting (what it left unacknowledged is delivered again)")]
    public static partial void DispatchFailed(ILogger logger, Exception exception);

    [LoggerMessage(7115, LogLevel.Warning, "The connection to {Host}:{Port} as '{ClientId}' ended {Count} times in a row soon after it was made (the last after {LastedMs} ms): another client is probably connected with the same client id (every proplet, proxy and manager node needs an entity id of its own); reconnecting with backoff")]
    public static partial void ConnectionFlapping(ILogger logger, string host, int port, string clientId, int count, long lastedMs);

    [LoggerMessage(7116, LogLevel.Error, "The broker {Host}:{Port} closed the connection as '{ClientId}' because another client connected with the same client id (session taken over): every proplet, proxy and manager node needs an entity id of its own; reconnecting with backoff")]
    public static partial void SessionTakenOver(ILogger logger, string host, int port, string clientId);

    [LoggerMessage(7117, LogLevel.Error, "A publish on {Topic} was not sent: its packet of {Size} bytes is larger than the broker's maximum packet size of {Maximum} bytes (the broker would close the connection for it)")]
    public static partial void PublishTooLarge(ILogger logger, string topic, long size, long maximum);

    [LoggerMessage(7111, LogLevel.Debug, "The connection stopped while it was connecting or subscribing ({Type}: {Reason})")]
    public static partial void StoppedWith(ILogger logger, string type, string reason);
}
