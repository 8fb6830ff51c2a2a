using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>One test per MQTTnet pitfall in ../shared/design/libraries.md, each against a real mosquitto.</summary>
public sealed class PitfallTests
{
    /// <summary>Pitfall 1: MQTTnet ignores the broker's Receive Maximum (MQTT 5: QuotaExceeded without an exception).</summary>
    [Fact]
    public async Task GivenMqtt5Broker_WhenPublishingFarMoreThanItsReceiveMaximumAtOnce_ThenTheWindowFollowsIt_AndEveryMessageArrives()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true\nmax_inflight_messages 20", ct);
        var topic = "pitfall/quota";
        var options = broker.Options(MqttProtocolVersion.V500, "pub");
        options.MaxInflight = 1000;
        await using var publisher = new BrokerConnection(options);
        await using var subscriber = new BrokerConnection(broker.Options(MqttProtocolVersion.V500, "sub"));
        var inbox = Inbox.Of(subscriber);
        await subscriber.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await publisher.StartAsync(ct);

        publisher.InflightLimit.ShouldBe(20, "mosquitto announces max_inflight_messages as its receive maximum");
        await Task.WhenAll(Enumerable.Range(0, 1000).Select(i => publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(CultureInfo.InvariantCulture)), MqttQualityOfServiceLevel.AtLeastOnce, ct)));

        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (seen.Count < 1000)
        {
            seen.Add(Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span));
        }
    }

    /// <summary>Pitfall 1 on 3.1.1: over the broker's limit a message is lost silently, so the window is configured at
    /// or below it (nothing announces it).</summary>
    [Fact]
    public async Task GivenMqtt311BrokerWithASmallInflightLimit_WhenTheWindowMatchesIt_ThenNothingIsLost()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true\nmax_inflight_messages 5", ct);
        var topic = "pitfall/v311";
        var options = broker.Options(MqttProtocolVersion.V311, "pub");
        options.MaxInflight = 5;
        await using var publisher = new BrokerConnection(options);
        await using var subscriber = new BrokerConnection(broker.Options(MqttProtocolVersion.V311, "sub"));
        var inbox = Inbox.Of(subscriber);
        await subscriber.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.ExactlyOnce, ct);
        await publisher.StartAsync(ct);

        await Task.WhenAll(Enumerable.Range(0, 300).Select(i => publisher.PublishAsync(topic, Encoding.UTF8.GetBytes(i.ToString(CultureInfo.InvariantCulture)), MqttQualityOfServiceLevel.AtLeastOnce, ct)));

        for (var i = 0; i < 300; i++)
        {
            Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe(i.ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Pitfall 2: concurrent QoS 2 publishes send PUBREL out of order. A task's start and stop (two topics)
    /// share the task's order key and arrive in order.</summary>
    [Fact]
    public async Task GivenConcurrentQos2Publishes_WhenStartAndStopShareTheTasksOrderKey_ThenEachTasksStartArrivesBeforeItsStop()
    {
        var ct = TestContext.Current.CancellationToken;
        var root = TestBroker.UniqueTopic("qos2order");
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        await using var subscriber = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        var inbox = Inbox.Of(subscriber);
        await subscriber.StartAsync(ct);
        await subscriber.SubscribeAsync(root + "/#", MqttQualityOfServiceLevel.ExactlyOnce, ct);
        await publisher.StartAsync(ct);

        var publishes = new List<Task>();
        for (var task = 0; task < 50; task++)
        {
            var key = task.ToString(CultureInfo.InvariantCulture);
            for (var step = 0; step < 4; step++)
            {
                var topic = root + (step % 2 == 0 ? "/start" : "/stop");
                publishes.Add(publisher.PublishAsync(topic, Encoding.UTF8.GetBytes($"{key}:{step}"), MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: key, ct));
            }
        }

        await Task.WhenAll(publishes);
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < 200; i++)
        {
            var parts = Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).Split(':');
            var step = int.Parse(parts[1], CultureInfo.InvariantCulture);
            step.ShouldBe(last.GetValueOrDefault(parts[0], -1) + 1, $"task {parts[0]} out of order");
            last[parts[0]] = step;
        }
    }

    /// <summary>Pitfall 3: the handler is sequential. Different keys run in parallel inside a batch, each key in order,
    /// and the batch is acknowledged in arrival order after it: nothing is redelivered to the persistent session.</summary>
    [Fact]
    public async Task GivenAHandlerThatRunsKeysInParallel_WhenManyKeysArrive_ThenEachKeyKeepsItsOrder_AndEverythingIsAcknowledged()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("perkey");
        var clientId = "perkey-" + Guid.NewGuid().ToString("N")[..8];
        var seen = new ConcurrentDictionary<int, List<int>>();
        var total = 0;
        var subscriber = new BrokerConnection(Persistent(clientId))
        {
            Handler = async (messages, _) =>
            {
                var parsed = messages.Select(m => Encoding.UTF8.GetString(m.Payload.Span).Split(':').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray());
                await Task.WhenAll(parsed.GroupBy(p => p[0]).Select(async ofKey =>
                {
                    foreach (var p in ofKey)
                    {
                        await Task.Yield();
                        var list = seen.GetOrAdd(p[0], _ => []);
                        lock (list)
                        {
                            list.Add(p[1]);
                        }

                        Interlocked.Increment(ref total);
                    }
                }));
            },
        };
        // The dispatch loop acknowledges a batch after its handler returned: the count of acknowledgements begun, not of
        // messages handled, says when the last one is on its way (its handler counted it before returning).
        var acknowledging = 0;
        subscriber.AcknowledgingForTests = _ => Interlocked.Increment(ref acknowledging);
        await subscriber.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await using (var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500)))
        {
            await publisher.StartAsync(ct);
            await Task.WhenAll(Enumerable.Range(0, 1000).Select(i => publisher.PublishAsync(topic, Encoding.UTF8.GetBytes($"{i % 20}:{i / 20}"), MqttQualityOfServiceLevel.AtLeastOnce, ct)));
        }

        var deadline = DateTime.UtcNow + TestBroker.Timeout;
        while ((Volatile.Read(ref total) < 1000 || Volatile.Read(ref acknowledging) < 1000) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }

        await Task.Delay(100, ct); // the last acknowledgement's write, begun just now

        total.ShouldBe(1000);
        foreach (var (key, values) in seen)
        {
            values.ShouldBe(Enumerable.Range(0, 50), $"key {key}");
        }

        // A barrier: a QoS 1 round trip from the subscriber returns after the broker read the acknowledgements sent before.
        await subscriber.PublishAsync(TestBroker.UniqueTopic("barrier"), "b"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await subscriber.DisposeAsync();
        await using var again = new BrokerConnection(Persistent(clientId));
        var inbox = Inbox.Of(again);
        await again.StartAsync(ct);
        (await inbox.NothingAsync(TimeSpan.FromMilliseconds(500), ct)).ShouldBeTrue("a message was not acknowledged");
    }

    /// <summary>Pitfall 3 with several batches in flight (the manager's setting): the next batch is handed over while the
    /// first is still being handled, and no batch is acknowledged before the ones before it. A connection that stops
    /// while the first is held leaves both to be delivered again, though the second's handler had returned.</summary>
    [Fact]
    public async Task GivenTwoBatchesInFlight_WhenTheFirstIsStillBeingHandled_ThenTheSecondIsHandedOver_AndNeitherIsAcknowledgedBeforeTheFirstReturns()
    {
        var ct = TestContext.Current.CancellationToken;
        var clientId = "inflight-" + Guid.NewGuid().ToString("N")[..8];
        var subscriber = await HoldFirstBatchAsync(Persistent(clientId, batchesInFlight: 2), _ => Task.CompletedTask, ct);

        // Stopping cancels the first batch's handler: neither batch is acknowledged.
        await subscriber.DisposeAsync();
        await using var again = new BrokerConnection(Persistent(clientId));
        var inbox = Inbox.Of(again);
        await again.StartAsync(ct);
        Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe("first");
        Encoding.UTF8.GetString((await inbox.ReceiveAsync(ct)).Payload.Span).ShouldBe("second");
    }

    /// <summary>With several batches in flight, disposing the connection returns only once every handler still running
    /// has ended (the first batch's gave up when it was cancelled; a later one finishes its work).</summary>
    [Fact]
    public async Task GivenTwoBatchesInFlight_WhenTheConnectionIsDisposed_ThenItReturnsOnlyOnceBothHandlersHaveEnded()
    {
        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.MaxBatchesInFlight = 2;
        var secondEnded = false;
        var subscriber = await HoldFirstBatchAsync(
            options,
            async _ =>
            {
                await Task.Delay(300, CancellationToken.None); // work that does not stop for the cancellation
                Volatile.Write(ref secondEnded, true);
            },
            TestContext.Current.CancellationToken);

        await subscriber.DisposeAsync();

        Volatile.Read(ref secondEnded).ShouldBeTrue();
    }

    /// <summary>Pitfall 4: QoS 2 is not exactly-once to the handler: a connection lost after the handler saw a message
    /// but before its acknowledgement delivers it again (so handlers are idempotent).</summary>
    [Fact]
    public async Task GivenQos2Message_WhenTheConnectionIsLostBeforeItsAcknowledgement_ThenItIsDeliveredAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("qos2again");
        var clientId = "again-" + Guid.NewGuid().ToString("N")[..8];
        var handled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = new BrokerConnection(Persistent(clientId))
        {
            AbortOnDispose = true,
            Handler = async (_, token) =>
            {
                handled.TrySetResult();
                await release.Task.WaitAsync(token);
            },
        };
        await first.StartAsync(ct);
        await first.SubscribeAsync(topic, MqttQualityOfServiceLevel.ExactlyOnce, ct);
        await using (var publisher = await PublisherAsync(ct))
        {
            await publisher.PublishAsync(topic, "once?"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, ct);
        }

        await handled.Task.WaitAsync(TestBroker.Timeout, ct);
        await first.DisposeAsync(); // the handler saw it; no PUBREC went out

        await using var second = new BrokerConnection(Persistent(clientId));
        var inbox = Inbox.Of(second);
        await second.StartAsync(ct);
        var again = await inbox.ReceiveAsync(ct);
        Encoding.UTF8.GetString(again.Payload.Span).ShouldBe("once?");
        again.Duplicate.ShouldBeTrue();
    }

    /// <summary>
    /// MQTTnet reports a lost connection only once the delivery of a received message to us has ended, and a full receive
    /// queue holds that delivery until the handler makes room: a connection lost while the handler is held up (the
    /// manager retrying against a PostgreSQL that is down) must still be noticed and made again, and what was waiting
    /// delivered again on the new one.
    /// </summary>
    [Fact]
    public async Task GivenAFullReceiveQueue_WhenTheConnectionIsLostWhileTheHandlerIsHeld_ThenItReconnectsAtOnce_AndEveryMessageArrives()
    {
        var ct = TestContext.Current.CancellationToken;
        var topic = TestBroker.UniqueTopic("fullqueue");
        var clientId = "full-" + Guid.NewGuid().ToString("N")[..8];
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var connects = 0;
        var reconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var seen = new ConcurrentDictionary<string, int>();
        void Record(IReadOnlyList<ReceivedMessage> messages)
        {
            foreach (var message in messages)
            {
                seen.AddOrUpdate(Encoding.UTF8.GetString(message.Payload.Span), 1, (_, n) => n + 1);
            }
        }

        var options = Persistent(clientId);
        options.ReceiveQueueCapacity = 1;
        options.MaxBatch = 1;
        await using var subscriber = new BrokerConnection(options)
        {
            Connected = (_, _) =>
            {
                if (Interlocked.Increment(ref connects) == 2)
                {
                    reconnected.TrySetResult();
                }

                return Task.CompletedTask;
            },
            Handler = async (messages, token) =>
            {
                Record(messages);
                held.TrySetResult();
                await release.Task.WaitAsync(token);
            },
        };
        await subscriber.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await using (var publisher = await PublisherAsync(ct))
        {
            for (var i = 0; i < 5; i++)
            {
                await publisher.PublishAsync(topic, Encoding.UTF8.GetBytes($"m{i}"), MqttQualityOfServiceLevel.AtLeastOnce, ct);
            }
        }

        // The handler holds m0, m1 fills the queue, m2 waits for room. The broker then hands the session to another client
        // (which may take some of what was not acknowledged: it records what it receives too).
        await held.Task.WaitAsync(TestBroker.Timeout, ct);
        await Task.Delay(300, ct);
        var thief = TestBroker.Options(MqttProtocolVersion.V500, clientId);
        thief.CleanStart = false;
        thief.SessionExpiryInterval = 600;
        thief.ReconnectAfterLoss = false;
        await using (var taker = new BrokerConnection(thief) { Handler = (messages, _) => { Record(messages); return ValueTask.CompletedTask; } })
        {
            await taker.StartAsync(ct);
        }

        await reconnected.Task.WaitAsync(TestBroker.Timeout, ct);
        release.TrySetResult();
        for (var i = 0; i < 5; i++)
        {
            var payload = $"m{i}";
            await EventuallyAsync(() => seen.ContainsKey(payload), ct);
        }
    }

    private static async Task EventuallyAsync(Func<bool> condition, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TestBroker.Timeout;
        while (!condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "waited for the condition");
            await Task.Delay(20, ct);
        }
    }

    /// <summary>Options of a subscriber with a persistent session (kept 10 minutes) under <paramref name="clientId"/>.</summary>
    private static BrokerOptions Persistent(string clientId, int batchesInFlight = 1)
    {
        var options = TestBroker.Options(MqttProtocolVersion.V500, clientId);
        options.CleanStart = false;
        options.SessionExpiryInterval = 600;
        options.MaxBatchesInFlight = batchesInFlight;
        return options;
    }

    private static async Task<BrokerConnection> PublisherAsync(CancellationToken cancellationToken)
    {
        var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));
        await publisher.StartAsync(cancellationToken);
        return publisher;
    }

    /// <summary>
    /// A subscriber (with <paramref name="options"/>) whose handler holds the batch "first" until the connection stops
    /// and runs <paramref name="second"/> on the next; returned once "first" is held and "second" has been handed over.
    /// </summary>
    private static async Task<BrokerConnection> HoldFirstBatchAsync(BrokerOptions options, Func<CancellationToken, Task> second, CancellationToken ct)
    {
        var topic = TestBroker.UniqueTopic("inflight");
        var firstHeld = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var secondStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var subscriber = new BrokerConnection(options)
        {
            Handler = async (messages, token) =>
            {
                if (Encoding.UTF8.GetString(messages[0].Payload.Span) == "first")
                {
                    firstHeld.TrySetResult();
                    await Task.Delay(Timeout.Infinite, token);
                }

                secondStarted.TrySetResult();
                await second(token);
            },
        };
        await subscriber.StartAsync(ct);
        await subscriber.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await using var publisher = await PublisherAsync(ct);
        await publisher.PublishAsync(topic, "first"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await firstHeld.Task.WaitAsync(TestBroker.Timeout, ct);
        await publisher.PublishAsync(topic, "second"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, ct);
        await secondStarted.Task.WaitAsync(TestBroker.Timeout, ct);
        return subscriber;
    }
}
