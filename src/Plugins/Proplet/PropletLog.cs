using Microsoft.Extensions.Logging;

namespace Propeller.Plugins.Proplet;

internal static partial class PropletLog
{
    [LoggerMessage(EventId = 5201, Level = LogLevel.Warning, Message = "Proplet plugins disabled: {Reason}")]
    public static partial void Disabled(ILogger logger, string reason);

    [LoggerMessage(EventId = 5202, Level = LogLevel.Information, Message = "Loaded component plugin {Name} from {File}")]
    public static partial void ComponentLoaded(ILogger logger, string name, string file);

    [LoggerMessage(EventId = 5203, Level = LogLevel.Error, Message = "Skipped component plugin {File}: {Reason}")]
    public static partial void ComponentSkipped(ILogger logger, string file, string reason);

    [LoggerMessage(EventId = 5204, Level = LogLevel.Warning, Message = "Component plugin call failed: {Reason}")]
    public static partial void ComponentFailed(ILogger logger, string reason);
}
