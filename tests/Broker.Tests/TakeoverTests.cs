using MQTTnet.Formatter;

namespace Propeller.Broker.Tests;

/// <summary>Two clients with one client id (two proplets given the same PROPLET_ENTITY_ID, two manager nodes one MANAGER_ENTITY_ID).</summary>
public sealed class TakeoverTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// The broker closes the older connection whenever the other client connects. Reconnecting at once, the two took the
    /// id from each other several times a second (measured: ~95 connects each in 20 s, a Last Will each time). Now a
    /// connection that keeps ending soon after it was made is made again with the backoff, and the likely cause is
    /// logged; once one of them stops, the other keeps the connection.
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V311)]
    public async Task GivenTwoClientsWithOneClientId_WhenTheyTakeItFromEachOther_ThenTheyBackOffAndSaySo(MqttProtocolVersion version)
    {
        var clientId = "twin-" + Guid.NewGuid().ToString("N")[..12];
        BrokerOptions Options()
        {
            var options = TestBroker.Options(version, clientId);
            options.ReconnectDelay = TimeSpan.FromMilliseconds(500);
            options.MaxReconnectDelay = TimeSpan.FromSeconds(4);
            return options;
        }

        var logs = new[] { new CountingLogger(), new CountingLogger() };
        await using var first = new BrokerConnection(Options(), logs[0]);
        await first.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        var second = new BrokerConnection(Options(), logs[1]);
        try
        {
            await second.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
            await Task.Delay(TimeSpan.FromSeconds(10), Ct);

            var connects = logs.Sum(l => l.Count(7101));
            connects.ShouldBeLessThan(30, "connects of the two in 10 s: without the backoff they take the id back at once, several times a second each");
            logs.Sum(l => l.Count(7115) + l.Count(7116)).ShouldBeGreaterThan(0, "the likely cause is logged");
        }
        finally
        {
            await second.DisposeAsync();
        }

        await first.WaitConnectedAsync(Ct).WaitAsync(TimeSpan.FromSeconds(15), Ct);
        var lost = logs[0].Count(7102);
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        first.IsConnected.ShouldBeTrue();
        logs[0].Count(7102).ShouldBe(lost, "the remaining client keeps its connection");
    }

    /// <summary>
    /// A connection that borrows another client's session (<see cref="BrokerOptions.ReconnectAfterLoss"/> false, as the
    /// manager's session recovery) is taken over by the session's owner coming back while it still removes the session's
    /// subscriptions (here: the relay holds its UNSUBACK back, and the owner connects). It stops there. Before, its own
    /// connect loop took the failed unsubscribe for a failed attempt, waited the backoff and connected again under the
    /// owner's client id, taking the session back from the owner.
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V311)]
    public async Task GivenABorrowedSession_WhenItsOwnerTakesItBackBeforeTheUnsuback_ThenTheBorrowerDoesNotConnectAgain(MqttProtocolVersion version)
    {
        var clientId = "owner-" + Guid.NewGuid().ToString("N")[..12];
        var topic = TestBroker.UniqueTopic("borrowed");
        BrokerOptions Session()
        {
            var options = TestBroker.Options(version, clientId);
            options.CleanStart = false;
            options.SessionExpiryInterval = 60;
            return options;
        }

        var owned = Session();
        owned.Subscriptions.Add((topic, MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce));
        await using (var gone = new BrokerConnection(owned))
        {
            await gone.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        }

        await using var relay = MqttRelay.Start(TestBroker.Address);
        var unsubscribing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        relay.FromBroker = packet => (packet[0] & 0xF0) == 0xB0 && unsubscribing.TrySetResult() ? null : packet; // the first UNSUBACK swallowed
        var borrowing = Session().WithAddress($"tcp://127.0.0.1:{relay.Port}");
        borrowing.ReconnectAfterLoss = false;
        borrowing.ReconnectDelay = TimeSpan.FromMilliseconds(50);
        borrowing.StaleSubscriptions.Add(topic);
        await using var borrower = new BrokerConnection(borrowing);
        _ = borrower.StartAsync(Ct);
        await unsubscribing.Task.WaitAsync(TestBroker.Timeout, Ct);

        await using var owner = new BrokerConnection(Session());
        await owner.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);

        await borrower.ConnectLoop.WaitAsync(TestBroker.Timeout, Ct);
        relay.Accepted.ShouldBe(1, "the borrower connected again, taking the session back from its owner");
        owner.IsConnected.ShouldBeTrue();
    }
}
