using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>The loop that hands received messages to the handler and acknowledges them keeps going when an
/// acknowledgement fails in an unexpected way.</summary>
public sealed class DispatchTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAnAcknowledgementThatFailsUnexpectedlyOnce_WhenMoreMessagesArrive_ThenTheyAreStillHandled()
    {
        var topic = TestBroker.UniqueTopic("ack-fails");
        await using var subscriber = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var acknowledgements = 0;
        subscriber.AcknowledgingForTests = _ =>
        {
            if (Interlocked.Increment(ref acknowledgements) == 1)
            {
                // What MQTTnet throws when it cleans up its adapter between the connection check and the send.
#pragma warning disable MA0012 // thrown on purpose: the exception MQTTnet lets out
                throw new NullReferenceException("the adapter is gone");
#pragma warning restore MA0012
            }
        };
        var inbox = Inbox.Of(subscriber);
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        await subscriber.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await publisher.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        await publisher.PublishAsync(topic, "1"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        (await inbox.ReceiveAsync(Ct)).Payload.ToArray().ShouldBe("1"u8.ToArray());
        await publisher.PublishAsync(topic, "2"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        var next = await inbox.ReceiveAsync(Ct); // before the fix the loop had died on the first acknowledgement: nothing more arrived
        next.Payload.ToArray().ShouldBe("2"u8.ToArray());
        Volatile.Read(ref acknowledgements).ShouldBeGreaterThanOrEqualTo(2);
        subscriber.IsConnected.ShouldBeTrue();
    }
}
