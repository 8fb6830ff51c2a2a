namespace Propeller.Plugins.Runtime;

/// <summary>A plugin call that failed, with the reason as callers report it ("plugin NAME HOOK: WHY").</summary>
internal sealed class PluginFailure : Exception
{
    public PluginFailure()
    {
    }

    public PluginFailure(string reason)
        : base(reason)
    {
    }

    public PluginFailure(string reason, Exception innerException)
        : base(reason, innerException)
    {
    }

    public string Reason => Message;
}
