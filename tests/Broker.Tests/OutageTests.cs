using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>Publishes made while no broker is reachable: each ends within its own operation timeout (or its token), however
/// many wait before it.</summary>
public sealed class OutageTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(5);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenNoBroker_WhenManyOrderedQos2PublishesShareAKey_ThenEachTimesOutWithinItsOwnTimeout()
    {
        await using var client = new BrokerConnection(NoBroker(TimeSpan.FromSeconds(1)));
        using var starting = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var start = client.StartAsync(starting.Token);

        // Before the fix the n-th waited for the n - 1 timeouts before it (8 s for the last).
        var calledAt = Stopwatch.GetTimestamp();
        var publishes = Enumerable.Range(0, 8)
            .Select(i => client.PublishAsync("outage/ordered", new byte[] { (byte)i }, MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: "k", Ct))
            .ToArray();
        foreach (var publish in publishes)
        {
            await Should.ThrowAsync<TimeoutException>(publish.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        }

        Stopwatch.GetElapsedTime(calledAt).ShouldBeLessThan(Generous, "every publish of the key ended within its own timeout of the call");
        await starting.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(start);
    }

    [Fact]
    public async Task GivenNoBroker_WhenAnOrderedQos2PublishWaitingForEarlierOnesIsCancelled_ThenItEndsPromptly()
    {
        await using var client = new BrokerConnection(NoBroker(TimeSpan.FromSeconds(10)));
        using var starting = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var start = client.StartAsync(starting.Token);
        var first = client.PublishAsync("outage/ordered", "1"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: "k", Ct);
        var second = client.PublishAsync("outage/ordered", "2"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: "k", Ct);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var third = client.PublishAsync("outage/ordered", "3"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: "k", cancel.Token);

        await Task.Delay(200, Ct);
        var cancelledAt = Stopwatch.GetTimestamp();
        await cancel.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(third.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        Stopwatch.GetElapsedTime(cancelledAt).ShouldBeLessThan(TimeSpan.FromSeconds(3), "the cancelled publish did not wait for the two before it (10 s each)");
        first.IsCompleted.ShouldBeFalse("the first is still waiting for the connection");
        second.IsCompleted.ShouldBeFalse();
        await starting.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(start);
    }

    [Fact]
    public async Task GivenNoBroker_WhenTheConnectionIsDisposedWhileAPublishWaits_ThenThePublishFailsAtOnceAsStopped()
    {
        var client = new BrokerConnection(NoBroker(TimeSpan.FromSeconds(30)));
        var start = client.StartAsync(Ct);
        var publish = client.PublishAsync("outage/stopped", "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await Task.Delay(100, Ct);

        var disposedAt = Stopwatch.GetTimestamp();
        await client.DisposeAsync();

        // Before the fix it waited out its 30 s and then blamed the connection ("Not connected ... within 30 s").
        await Should.ThrowAsync<ObjectDisposedException>(publish.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        Stopwatch.GetElapsedTime(disposedAt).ShouldBeLessThan(TimeSpan.FromSeconds(3));
        start.IsCompleted.ShouldBeFalse("StartAsync waits for a connection that never came; its caller's token ends it");
    }

    [Fact]
    public async Task GivenNoBroker_WhenDisconnected_ThenWaitingPublishesFailAtOnce_AndNewOnesAreRefused()
    {
        await using var client = new BrokerConnection(NoBroker(TimeSpan.FromSeconds(30)));
        using var starting = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var start = client.StartAsync(starting.Token);
        var waiting = client.PublishAsync("outage/stopped", "x"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: "k", Ct);
        var after = client.PublishAsync("outage/stopped", "y"u8.ToArray(), MqttQualityOfServiceLevel.ExactlyOnce, retain: false, orderKey: "k", Ct);
        await Task.Delay(100, Ct);

        var stoppedAt = Stopwatch.GetTimestamp();
        await client.DisconnectAsync(Ct);

        await Should.ThrowAsync<ObjectDisposedException>(waiting.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        await Should.ThrowAsync<ObjectDisposedException>(after.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        await Should.ThrowAsync<ObjectDisposedException>(
            client.PublishAsync("outage/stopped", "z"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct));
        Stopwatch.GetElapsedTime(stoppedAt).ShouldBeLessThan(TimeSpan.FromSeconds(3));
        await starting.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(start);
    }

    /// <summary>A loopback port nothing listens on (connects are refused at once), and the given operation timeout.</summary>
    /// <summary>
    /// Publishes given up during an outage (their operation timeout) leave nothing behind on the connection: before, the
    /// send loop's wait for the connection, one per publish, stayed registered on it until the connection came back (a
    /// little memory per publish for as long as the outage lasted).
    /// </summary>
    [Fact]
    public async Task GivenNoBroker_WhenManyPublishesAreGivenUp_ThenNothingOfThemWaitsOnTheConnection()
    {
        await using var client = new BrokerConnection(NoBroker(TimeSpan.FromMilliseconds(200)));
        using var starting = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var start = client.StartAsync(starting.Token);
        var before = WaitingOnTheConnection(client);

        var publishes = Enumerable.Range(0, 300)
            .Select(i => client.PublishAsync("outage/given-up", new byte[] { (byte)i }, MqttQualityOfServiceLevel.AtLeastOnce, Ct))
            .ToArray();
        foreach (var publish in publishes)
        {
            await Should.ThrowAsync<TimeoutException>(publish.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        }

        // The send loop drops what its callers gave up as it takes them (one more publish to know it has taken them all).
        await Should.ThrowAsync<TimeoutException>(client.PublishAsync("outage/last", "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct));
        WaitingOnTheConnection(client).ShouldBeLessThanOrEqualTo(before + 1, "waits left on the connection by 301 publishes given up");
        await starting.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(start);
    }

    /// <summary>How many continuations wait on the connection's "connected" task (the runtime keeps them in the task's
    /// m_continuationObject: one object or a list with removed entries nulled).</summary>
    private static int WaitingOnTheConnection(BrokerConnection client)
    {
        var connected = typeof(BrokerConnection).GetField("_connected", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(client)!;
        var task = (Task)connected.GetType().GetProperty("Task")!.GetValue(connected)!;
        var field = typeof(Task).GetField("m_continuationObject", BindingFlags.Instance | BindingFlags.NonPublic)
                    ?? throw new InvalidOperationException("the runtime's Task has no m_continuationObject: the test needs another way to count");
        return field.GetValue(task) switch
        {
            null => 0,
            System.Collections.IList list => list.Cast<object?>().Count(c => c is not null),
            _ => 1,
        };
    }

    private static BrokerOptions NoBroker(TimeSpan operationTimeout)
    {
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.Host = "127.0.0.1";
        options.Port = port;
        options.OperationTimeout = operationTimeout;
        return options;
    }

    /// <summary>
    /// A connection lost while a large publish is being written: MQTTnet disposes the socket under the pending write and
    /// reports the aborted write as a bare OperationCanceledException. That is a lost connection, not a timeout: the
    /// publish waits for the next connection and is sent again (it failed at once with a TimeoutException).
    /// </summary>
    [Fact]
    public async Task GivenALargePublishWhoseConnectionIsLostMidWrite_WhenTheConnectionReturns_ThenItIsSentAgainAndArrives()
    {
        var topic = TestBroker.UniqueTopic("lost-mid-write");
        var subscriberOptions = TestBroker.Options(MqttProtocolVersion.V500);
        subscriberOptions.Subscriptions.Add((topic, MqttQualityOfServiceLevel.AtLeastOnce));
        await using var subscriber = new BrokerConnection(subscriberOptions);
        var inbox = Inbox.Of(subscriber);
        await subscriber.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await using var relay = MqttRelay.Start(TestBroker.Address);
        await using var publisher = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500).WithAddress($"tcp://127.0.0.1:{relay.Port}"));
        await publisher.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        var payload = new byte[16 * 1024 * 1024];
        Random.Shared.NextBytes(payload);
        relay.StallAfterClientBytes = 1024 * 1024;

        await publisher.PublishAsync(topic, payload, MqttQualityOfServiceLevel.AtLeastOnce, Ct).WaitAsync(TestBroker.Timeout * 2, Ct);

        relay.StallAfterClientBytes.ShouldBe(-1, "the relay stalled and hung up mid-write");
        relay.Accepted.ShouldBeGreaterThanOrEqualTo(2);
        var received = await inbox.ReceiveAsync(Ct);
        received.Payload.Length.ShouldBe(payload.Length);
        received.Payload.Span.SequenceEqual(payload).ShouldBeTrue();
    }
}
