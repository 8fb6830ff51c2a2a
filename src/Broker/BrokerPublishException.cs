using MQTTnet;

namespace Propeller.Broker;

/// <summary>The broker refused a publish (a reason code other than success, no matching subscribers or quota exceeded).</summary>
public sealed class BrokerPublishException : Exception
{
    public BrokerPublishException()
    {
    }

    public BrokerPublishException(string message)
        : base(message)
    {
    }

    public BrokerPublishException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public BrokerPublishException(string topic, MqttClientPublishReasonCode reasonCode, string? reasonString)
        : base($"The broker refused the publish on {topic}: {reasonCode}{(string.IsNullOrEmpty(reasonString) ? "" : " (" + reasonString + ")")}")
    {
        ReasonCode = reasonCode;
    }

    public MqttClientPublishReasonCode? ReasonCode { get; }
}
