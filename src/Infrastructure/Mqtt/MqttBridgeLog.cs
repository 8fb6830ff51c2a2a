using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Mqtt;

internal static partial class MqttBridgeLog
{
    [LoggerMessage(EventId = 7001, Level = LogLevel.Warning, Message = "Dropped a malformed message on {Topic} (acknowledged, counted in mqtt_malformed_messages): {Reason}")]
    public static partial void Malformed(ILogger logger, string topic, string reason);

    [LoggerMessage(EventId = 7015, Level = LogLevel.Warning, Message = "A message on {Topic} has fields of the wrong type, read without them: {Fields}")]
    public static partial void FieldsIgnored(ILogger logger, string topic, string fields);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Information, Message = "Connected to {Address}; listening on {Filter}")]
    public static partial void Listening(ILogger logger, string address, string filter);

    [LoggerMessage(EventId = 7004, Level = LogLevel.Warning, Message = "Handling a message on {Topic} failed; it will be handled again if redelivered")]
    public static partial void HandlerFailed(ILogger logger, Exception exception, string topic);

    [LoggerMessage(EventId = 7008, Level = LogLevel.Debug, Message = "Invoke result for task {TaskId} with invocation id '{InvocationId}', which no request waits for: ignored")]
    public static partial void InvocationUnknown(ILogger logger, string taskId, string invocationId);
}
