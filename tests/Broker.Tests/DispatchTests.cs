using System.Text;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>The loop that hands received messages to the handler and acknowledges them: it keeps going when an
/// acknowledgement fails in an unexpected way, and tells how long its oldest unhandled message has waited.</summary>
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

    /// <summary>
    /// A publish that MQTTnet fails as it does when it races the loss of its connection (a NullReferenceException or an
    /// ObjectDisposedException from its cleaned-up adapter) is sent again, not failed to its caller: delivered once.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GivenAPublishThatMqttnetFailsAsWhenItsConnectionIsLost_ThenItIsSentAgain(bool disposed)
    {
        var topic = TestBroker.UniqueTopic("publish-race");
        await using var subscriber = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var inbox = Inbox.Of(subscriber);
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var publishes = 0;
        publisher.PublishingForTests = _ => Interlocked.Increment(ref publishes) == 1
#pragma warning disable MA0012 // on purpose: the exceptions MQTTnet lets out
            ? disposed ? new ObjectDisposedException("MqttChannelAdapter") : new NullReferenceException("the adapter is gone")
#pragma warning restore MA0012
            : null;
        await subscriber.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await publisher.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        await publisher.PublishAsync(topic, "1"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct); // before the fix: the NullReferenceException
        (await inbox.ReceiveAsync(Ct)).Payload.ToArray().ShouldBe("1"u8.ToArray());
        await publisher.PublishAsync(topic, "2"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        (await inbox.ReceiveAsync(Ct)).Payload.ToArray().ShouldBe("2"u8.ToArray());
        Volatile.Read(ref publishes).ShouldBe(3);
    }

    /// <summary>
    /// MQTTnet reports a write its socket was disposed under (the connection lost mid-write) as a bare
    /// OperationCanceledException, neither the caller's token nor the acknowledgement timeout: a lost connection, sent
    /// again, not a timeout thrown at once.
    /// </summary>
    [Theory]
    [InlineData(MqttQualityOfServiceLevel.AtMostOnce)]
    [InlineData(MqttQualityOfServiceLevel.AtLeastOnce)]
    public async Task GivenAPublishThatMqttnetCancelsOnItsOwn_ThenItIsSentAgain(MqttQualityOfServiceLevel qos)
    {
        var topic = TestBroker.UniqueTopic("publish-aborted");
        await using var subscriber = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var inbox = Inbox.Of(subscriber);
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var publishes = 0;
        publisher.PublishingForTests = _ => Interlocked.Increment(ref publishes) == 1 ? new OperationCanceledException() : null;
        await subscriber.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await publisher.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        await publisher.PublishAsync(topic, "1"u8.ToArray(), qos, Ct).WaitAsync(TestBroker.Timeout, Ct);

        (await inbox.ReceiveAsync(Ct)).Payload.ToArray().ShouldBe("1"u8.ToArray());
        Volatile.Read(ref publishes).ShouldBe(2);
    }

    /// <summary>
    /// A publish the connection lost (failed here as MQTTnet fails one when it is not connected) is sent again, and a
    /// publish with the same order key called meanwhile goes out after it, at QoS 1 as at QoS 2. Before, at QoS 1 the
    /// later one went first: a task's stop called while its start was being sent again reached the proplet before the
    /// start, which it ignored as the stop of a task it did not know, and then it ran the task.
    /// </summary>
    [Theory]
    [InlineData(MqttQualityOfServiceLevel.AtLeastOnce)]
    [InlineData(MqttQualityOfServiceLevel.ExactlyOnce)]
    public async Task GivenALostPublish_WhenOneWithItsOrderKeyIsCalledMeanwhile_ThenTheyArriveInCallOrder(MqttQualityOfServiceLevel qos)
    {
        var topic = TestBroker.UniqueTopic("lost-order");
        await using var subscriber = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var inbox = Inbox.Of(subscriber);
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        using var laterCalled = new ManualResetEventSlim();
        var publishes = 0;
        publisher.PublishingForTests = _ =>
        {
            if (Interlocked.Increment(ref publishes) != 1)
            {
                return null;
            }

            laterCalled.Wait(TimeSpan.FromMilliseconds(500), Ct); // the later one is called while this one is on its way
            return new MQTTnet.Exceptions.MqttClientNotConnectedException();
        };
        await subscriber.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await publisher.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await subscriber.SubscribeAsync(topic, qos, Ct);

        var start = publisher.PublishAsync(topic, "start"u8.ToArray(), qos, retain: false, orderKey: "task", Ct);
        var stop = publisher.PublishAsync(topic, "stop"u8.ToArray(), qos, retain: false, orderKey: "task", Ct);
        laterCalled.Set();
        await Task.WhenAll(start, stop).WaitAsync(TestBroker.Timeout, Ct);

        string[] arrived = [Encoding.UTF8.GetString((await inbox.ReceiveAsync(Ct)).Payload.Span), Encoding.UTF8.GetString((await inbox.ReceiveAsync(Ct)).Payload.Span)];
        arrived.ShouldBe(["start", "stop"]);
    }

    /// <summary>
    /// UnhandledFor: zero while nothing waits; while a handler holds its batch, the time since that batch's first message
    /// arrived, also once later batches have been handled beside it (their acknowledgements wait for it); zero again once
    /// it returns.
    /// </summary>
    [Fact]
    public async Task GivenAHeldBatch_ThenUnhandledForIsTheTimeSinceItsArrival_AndZeroOnceItIsHandled()
    {
        var topic = TestBroker.UniqueTopic("unhandled");
        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.MaxBatchesInFlight = 4;
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var later = 0;
        await using var subscriber = new BrokerConnection(options)
        {
            Handler = async (messages, token) =>
            {
                if (messages[0].Payload.Span.SequenceEqual("hold"u8))
                {
                    held.TrySetResult();
                    await release.Task.WaitAsync(token);
                    return;
                }

                Interlocked.Increment(ref later);
            },
        };
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        await subscriber.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await publisher.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        subscriber.UnhandledFor.ShouldBe(TimeSpan.Zero);

        await publisher.PublishAsync(topic, "hold"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await held.Task.WaitAsync(TestBroker.Timeout, Ct);
        var heldAt = DateTime.UtcNow;
        await publisher.PublishAsync(topic, "after"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        while (Volatile.Read(ref later) == 0)
        {
            await Task.Delay(10, Ct);
        }

        await Task.Delay(300, Ct);
        subscriber.UnhandledFor.ShouldBeGreaterThanOrEqualTo(DateTime.UtcNow - heldAt, "the held batch still waits, though the one after it was handled");

        release.SetResult();
        var deadline = DateTime.UtcNow + TestBroker.Timeout;
        while (subscriber.UnhandledFor != TimeSpan.Zero && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, Ct);
        }

        subscriber.UnhandledFor.ShouldBe(TimeSpan.Zero);
    }
}
