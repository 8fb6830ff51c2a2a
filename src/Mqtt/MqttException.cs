namespace Propeller.Mqtt;

/// <summary>An MQTT operation failed: the broker answered with a failure reason code, the connection was lost
/// with no way to recover, or the client is not connected.</summary>
public class MqttException : Exception
{
    public MqttException()
    {
    }

    public MqttException(string message)
        : base(message)
    {
    }

    public MqttException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public MqttException(string message, byte reasonCode)
        : base(message)
    {
        ReasonCode = reasonCode;
    }

    /// <summary>The MQTT reason code the broker returned, when there is one.</summary>
    public byte? ReasonCode { get; }
}
