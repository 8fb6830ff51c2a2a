using System.Net;
using System.Net.Sockets;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker.Tests;

/// <summary>What goes wrong around a connect: a step after it that fails, a filter the broker would refuse, a stop in the middle of it.</summary>
public sealed class ConnectFailureTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenTheStepAfterTheConnectFailsOnce_WhenTheConnectionTriesAgain_ThenItBecomesReadyAndPublishes()
    {
        var options = TestBroker.Options(MqttProtocolVersion.V500);
        options.Subscriptions.Add((TestBroker.UniqueTopic("after-connect"), MqttQualityOfServiceLevel.AtLeastOnce));
        var calls = 0;
        options.Subscribing = _ =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                throw new InvalidOperationException("the first subscribing step fails");
            }
        };
        await using var client = new BrokerConnection(options);

        await client.StartAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        await client.PublishAsync(TestBroker.UniqueTopic("after-connect"), "x"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        Volatile.Read(ref calls).ShouldBeGreaterThanOrEqualTo(2);
    }

    [Theory]
    [InlineData("a/#/b")]
    [InlineData("a/b+")]
    [InlineData("a#")]
    [InlineData("")]
    public async Task GivenAFilterTheBrokerWouldRefuse_WhenSubscribed_ThenItIsRefusedAndNotKept(string filter)
    {
        await using var client = new BrokerConnection(TestBroker.Options(MqttProtocolVersion.V500));

        await Should.ThrowAsync<ArgumentException>(() => client.SubscribeAsync(filter, MqttQualityOfServiceLevel.AtLeastOnce, Ct));

        client.Options.Subscriptions.ShouldBeEmpty();
    }

    [Fact]
    public async Task GivenABrokerThatNeverAnswersTheConnect_WhenTheConnectionIsDisposedMeanwhile_ThenDisposingEndsQuietly()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var accepted = new List<Socket>();
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Add(await silent.AcceptSocketAsync(Ct)); // and never says a word
            }
        }, Ct);
        var options = new BrokerOptions { ClientId = "silent-" + Guid.NewGuid().ToString("N")[..8], ConnectTimeout = TimeSpan.FromSeconds(30) }
            .WithAddress($"tcp://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}");
        var client = new BrokerConnection(options);
        using (var waiting = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            waiting.CancelAfter(TimeSpan.FromMilliseconds(300));
            await Should.ThrowAsync<OperationCanceledException>(() => client.StartAsync(waiting.Token));
        }

        await client.DisposeAsync(); // in the middle of the CONNECT, which waits for its CONNACK

        client.IsConnected.ShouldBeFalse();
        silent.Stop();
        foreach (var socket in accepted)
        {
            socket.Dispose();
        }

        await Should.ThrowAsync<Exception>(() => accepting);
    }
}
