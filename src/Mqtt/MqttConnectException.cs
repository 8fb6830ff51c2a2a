namespace Propeller.Mqtt;

/// <summary>The broker refused the connection (CONNACK with a failure code), e.g. bad credentials.</summary>
public sealed class MqttConnectException : MqttException
{
    public MqttConnectException()
    {
    }

    public MqttConnectException(string message)
        : base(message)
    {
    }

    public MqttConnectException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal MqttConnectException(MqttProtocolVersion version, byte reasonCode, string? reasonString)
        : base(Describe(version, reasonCode, reasonString), reasonCode)
    {
        IsAuthenticationFailure = version == MqttProtocolVersion.V311
            ? reasonCode is 4 or 5
            : reasonCode is 0x86 or 0x87 or 0x8C;
    }

    /// <summary>True when the broker rejected the username/password or the client is not authorized.</summary>
    public bool IsAuthenticationFailure { get; }

    private static string Describe(MqttProtocolVersion version, byte code, string? reasonString)
    {
        var text = version == MqttProtocolVersion.V311
            ? code switch
            {
                1 => "unacceptable protocol version",
                2 => "client identifier rejected",
                3 => "server unavailable",
                4 => "bad user name or password",
                5 => "not authorized",
                _ => "unknown return code",
            }
            : code switch
            {
                0x80 => "unspecified error",
                0x81 => "malformed packet",
                0x82 => "protocol error",
                0x83 => "implementation specific error",
                0x84 => "unsupported protocol version",
                0x85 => "client identifier not valid",
                0x86 => "bad user name or password",
                0x87 => "not authorized",
                0x88 => "server unavailable",
                0x89 => "server busy",
                0x8A => "banned",
                0x8C => "bad authentication method",
                0x90 => "topic name invalid",
                0x95 => "packet too large",
                0x97 => "quota exceeded",
                0x99 => "payload format invalid",
                0x9A => "retain not supported",
                0x9B => "QoS not supported",
                0x9C => "use another server",
                0x9D => "server moved",
                0x9F => "connection rate exceeded",
                _ => "unknown reason code",
            };
        var suffix = string.IsNullOrEmpty(reasonString) ? string.Empty : $" ({reasonString})";
        return $"The MQTT broker refused the connection: {text} (reason code 0x{code:X2}){suffix}.";
    }
}
