namespace Propeller.Edge.Tasks;

/// <summary>Why a task was ended from outside its own code.</summary>
public enum StopReason
{
    None,
    Stopped,
    TimedOut,
    ShuttingDown,
}
