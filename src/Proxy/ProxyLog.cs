namespace Propeller.Proxy;

internal static partial class ProxyLog
{
    [LoggerMessage(EventId = 9001, Level = LogLevel.Information, Message = "Proxy {EntityId} starting: broker {Address}, topics {BaseTopic}/registry/..., chunk size {ChunkSize}, cache {CacheBytes} bytes")]
    public static partial void Starting(ILogger logger, string entityId, string address, string baseTopic, int chunkSize, long cacheBytes);

    [LoggerMessage(EventId = 9002, Level = LogLevel.Information, Message = "Connected; subscribed to registry/proplet")]
    public static partial void Subscribed(ILogger logger);

    [LoggerMessage(EventId = 9003, Level = LogLevel.Warning, Message = "Ignored a malformed message on {Topic}: {Reason}")]
    public static partial void Malformed(ILogger logger, string topic, string reason);

    [LoggerMessage(EventId = 9004, Level = LogLevel.Information, Message = "Image {App}: {Bytes} bytes ({Digest}) {Source}; publishing {Count} of {Total} chunks")]
    public static partial void Serving(ILogger logger, string app, long bytes, string digest, string source, int count, int total);

    [LoggerMessage(EventId = 9005, Level = LogLevel.Warning, Message = "Image {App} cannot be delivered: {Reason}")]
    public static partial void FetchFailed(ILogger logger, string app, string reason);

    [LoggerMessage(EventId = 9006, Level = LogLevel.Debug, Message = "Image {App} is already being fetched; this request shares its chunks")]
    public static partial void Deduplicated(ILogger logger, string app);

    [LoggerMessage(EventId = 9007, Level = LogLevel.Warning, Message = "Publishing chunk {Index} of {App} failed (the proplet asks for it again): {Reason}")]
    public static partial void ChunkFailed(ILogger logger, int index, string app, string reason);

    [LoggerMessage(EventId = 9020, Level = LogLevel.Warning, Message = "Image {App}: the broker connection is down; the rest of this delivery's chunks are skipped (the proplets ask for them again)")]
    public static partial void PublicationBroken(ILogger logger, string app);

    [LoggerMessage(EventId = 9008, Level = LogLevel.Error, Message = "Image {App}: unexpected proxy error")]
    public static partial void Crashed(ILogger logger, string app, Exception exception);

    [LoggerMessage(EventId = 9009, Level = LogLevel.Information, Message = "Proxy {EntityId} stopped")]
    public static partial void Stopped(ILogger logger, string entityId);

    [LoggerMessage(EventId = 9011, Level = LogLevel.Warning, Message = "Image {Reference}: registry request failed ({What}); retry {Attempt} of {Retries} in {DelayMs} ms")]
    public static partial void RegistryRetry(ILogger logger, string reference, string what, int attempt, int retries, long delayMs);

    [LoggerMessage(EventId = 9012, Level = LogLevel.Debug, Message = "Image {App} is being delivered; this request for some of its chunks is served once that delivery ended")]
    public static partial void AwaitingDelivery(ILogger logger, string app);

    [LoggerMessage(EventId = 9013, Level = LogLevel.Critical, Message = "Proxy stopped on an error: {Error}; exiting with code 1")]
    public static partial void ProxyFailed(ILogger logger, string error, Exception exception);

    [LoggerMessage(EventId = 9014, Level = LogLevel.Warning, Message = "Publishing the failure of {App} on registry/failure failed (its proplets wait for their timeout): {Reason}")]
    public static partial void FailurePublishFailed(ILogger logger, string app, string reason);

    [LoggerMessage(EventId = 9015, Level = LogLevel.Information, Message = "Image {App}: another delivery of it delivered; this one's failure is not published ({Reason})")]
    public static partial void FailureWithheld(ILogger logger, string app, string reason);

    [LoggerMessage(EventId = 9016, Level = LogLevel.Information, Message = "Image {App}: delivered once more for the requests of the delivery that failed (what delivered was another format's or fewer chunks)")]
    public static partial void DeliveringAgain(ILogger logger, string app);

    [LoggerMessage(EventId = 9010, Level = LogLevel.Warning, Message = "Too many images in flight ({Count}); refusing {App}")]
    public static partial void Busy(ILogger logger, int count, string app);
}
