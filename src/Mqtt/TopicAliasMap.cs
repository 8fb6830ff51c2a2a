namespace Propeller.Mqtt;

/// <summary>Topic aliases the broker set on one connection (MQTT 5 §3.3.2.3.4); aliases never outlive it.</summary>
internal sealed class TopicAliasMap(ushort maximum)
{
    private string?[]? _topics;

    /// <summary>Resolves the topic of a received PUBLISH. An alias with a topic (re)defines it; an alias without a
    /// topic must be known. Returns false with <paramref name="error"/> on a protocol error.</summary>
    public bool TryResolve(string topic, ushort? alias, out string resolved, out string? error)
    {
        error = null;
        resolved = topic;
        if (alias is not { } a)
        {
            return true;
        }

        if (a == 0 || a > maximum)
        {
            error = $"topic alias {a} outside 1..{maximum}";
            return false;
        }

        _topics ??= new string?[maximum + 1];
        if (topic.Length > 0)
        {
            _topics[a] = topic;
            return true;
        }

        if (_topics[a] is { } known)
        {
            resolved = known;
            return true;
        }

        error = $"topic alias {a} used before it was defined";
        return false;
    }
}
