using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.MartenStore;

internal static partial class MartenLog
{
    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Marten event store schema applied in {Schema}")]
    public static partial void SchemaApplied(ILogger logger, string schema);
}
