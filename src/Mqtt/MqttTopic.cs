namespace Propeller.Mqtt;

/// <summary>Topic name and topic filter rules (MQTT 4.7).</summary>
internal static class MqttTopic
{
    public static void ValidateTopicName(string topic, string paramName)
    {
        ArgumentNullException.ThrowIfNull(topic, paramName);
        if (topic.Length == 0 || topic.AsSpan().IndexOfAny('+', '#', '\0') >= 0)
        {
            throw new ArgumentException($"'{topic}' is not a valid MQTT topic name (empty, or contains a wildcard or NUL).", paramName);
        }
    }

    public static void ValidateTopicFilter(string filter, string paramName)
    {
        ArgumentNullException.ThrowIfNull(filter, paramName);
        if (!IsValidFilter(filter))
        {
            throw new ArgumentException($"'{filter}' is not a valid MQTT topic filter.", paramName);
        }
    }

    public static bool IsValidFilter(string filter)
    {
        if (filter.Length == 0 || filter.Contains('\0', StringComparison.Ordinal))
        {
            return false;
        }

        var levels = filter.Split('/');
        for (var i = 0; i < levels.Length; i++)
        {
            var level = levels[i];
            if (level.Contains('#', StringComparison.Ordinal) && (level.Length != 1 || i != levels.Length - 1))
            {
                return false;
            }

            if (level.Contains('+', StringComparison.Ordinal) && level.Length != 1)
            {
                return false;
            }
        }

        return true;
    }
}
