using Microsoft.Extensions.Logging;

namespace Propeller.Plugins.Proplet;

internal static partial class PropletLog
{
    [LoggerMessage(EventId = 8201, Level = LogLevel.Warning, Message = "Proplet plugins disabled: {Reason}")]
    public static partial void Disabled(ILogger logger, string reason);
}
