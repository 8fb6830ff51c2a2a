namespace Propeller.Mqtt.Tests;

public sealed class ClientPartsTests
{
    [Fact]
    public async Task GivenFullWindow_WhenSlotsAreReleased_ThenWaitersAreGrantedFirstInFirstOut()
    {
        var ct = TestContext.Current.CancellationToken;
        var window = new InflightWindow(2);
        await window.AcquireAsync(ct);
        await window.AcquireAsync(ct);
        var order = new List<int>();
        var first = Track(window.AcquireAsync(ct), order, 1);
        var second = Track(window.AcquireAsync(ct), order, 2);
        first.IsCompleted.ShouldBeFalse();
        window.InUse.ShouldBe(2);

        window.Release();
        await first;
        second.IsCompleted.ShouldBeFalse();
        window.Release();
        await second;
        order.ShouldBe([1, 2]);
        window.InUse.ShouldBe(2);
    }

    [Fact]
    public async Task GivenCancelledWaiter_WhenASlotIsReleased_ThenTheNextWaiterGetsIt()
    {
        var ct = TestContext.Current.CancellationToken;
        var window = new InflightWindow(1);
        await window.AcquireAsync(ct);
        using var cts = new CancellationTokenSource();
        var cancelled = window.AcquireAsync(cts.Token).AsTask();
        var next = window.AcquireAsync(ct).AsTask();
        await cts.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => cancelled);
        window.Release();
        await next.WaitAsync(TimeSpan.FromSeconds(5), ct);
        window.InUse.ShouldBe(1);
    }

    [Fact]
    public async Task GivenBrokerReceiveMaximum_WhenTheLimitShrinksAndGrows_ThenTheWindowFollows()
    {
        var ct = TestContext.Current.CancellationToken;
        var window = new InflightWindow(3);
        await window.AcquireAsync(ct);
        await window.AcquireAsync(ct);
        window.SetLimit(1);
        var waiting = window.AcquireAsync(ct).AsTask();
        window.Release();
        waiting.IsCompleted.ShouldBeFalse();
        window.SetLimit(3);
        await waiting.WaitAsync(TimeSpan.FromSeconds(5), ct);
        window.InUse.ShouldBe(2);
    }

    [Theory]
    [InlineData(0, 0.0, 500)]
    [InlineData(0, 1.0, 1000)]
    [InlineData(1, 1.0, 2000)]
    [InlineData(3, 0.5, 6000)]
    [InlineData(6, 1.0, 60000)]
    [InlineData(40, 0.0, 30000)]
    public void GivenAttempt_WhenComputingBackoff_ThenItDoublesUpToTheMaximumWithEqualJitter(int attempt, double random, int expectedMs)
    {
        MqttClient.ComputeBackoff(attempt, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60), random)
            .TotalMilliseconds.ShouldBe(expectedMs, tolerance: 0.001);
    }

    [Theory]
    [InlineData("tcp://127.0.0.1:51883", "127.0.0.1", 51883, false)]
    [InlineData("mqtt://broker", "broker", 1883, false)]
    [InlineData("ssl://broker", "broker", 8883, true)]
    [InlineData("mqtts://broker:9000", "broker", 9000, true)]
    [InlineData("tls://[::1]:8884", "::1", 8884, true)]
    [InlineData("localhost:1884", "localhost", 1884, false)]
    [InlineData("10.0.0.5", "10.0.0.5", 1883, false)]
    public void GivenAddress_WhenParsing_ThenHostPortAndTlsFollowTheProletRules(string address, string host, int port, bool tls)
    {
        var options = new MqttClientOptions().WithAddress(address);
        options.Host.ShouldBe(host);
        options.Port.ShouldBe(port);
        (options.Tls is not null).ShouldBe(tls);
    }

    [Fact]
    public void GivenInvalidOptions_WhenCreatingAClient_ThenArgumentExceptionNamesTheProblem()
    {
        Should.Throw<ArgumentException>(() => new MqttClient(new MqttClientOptions { MaxInflight = 0 })).Message.ShouldContain("MaxInflight");
        Should.Throw<ArgumentException>(() => new MqttClient(new MqttClientOptions { CleanStart = false })).Message.ShouldContain("client id");
        Should.Throw<ArgumentException>(() => new MqttClient(new MqttClientOptions { Tls = new MqttTlsOptions { ClientCertificateFile = "c.pem" } }))
            .Message.ShouldContain("certificate and its key");
        Should.Throw<ArgumentException>(() => new MqttClient(new MqttClientOptions { Will = new MqttMessage { Topic = "a/#" } }));
        Should.Throw<ArgumentException>(() => new MqttClient(new MqttClientOptions
        {
            MessageHandler = (_, _) => ValueTask.CompletedTask,
            MessageBatchHandler = (_, _) => ValueTask.CompletedTask,
        })).Message.ShouldContain("not both");
    }

    [Fact]
    public void GivenTopicAliases_WhenResolving_ThenDefinitionsAndReferencesFollowTheRules()
    {
        var map = new TopicAliasMap(2);
        map.TryResolve("plain", null, out var topic, out _).ShouldBeTrue();
        topic.ShouldBe("plain");
        map.TryResolve(string.Empty, 1, out _, out var error).ShouldBeFalse();
        error.ShouldNotBeNull().ShouldContain("before it was defined");
        map.TryResolve("a/b", 1, out _, out _).ShouldBeTrue();
        map.TryResolve(string.Empty, 1, out topic, out _).ShouldBeTrue();
        topic.ShouldBe("a/b");
        map.TryResolve("c", 1, out _, out _).ShouldBeTrue();
        map.TryResolve(string.Empty, 1, out topic, out _).ShouldBeTrue();
        topic.ShouldBe("c");
        map.TryResolve("d", 3, out _, out error).ShouldBeFalse();
        error.ShouldNotBeNull().ShouldContain("outside 1..2");
        new TopicAliasMap(0).TryResolve("x", 1, out _, out _).ShouldBeFalse();
    }

    private static async Task Track(ValueTask acquire, List<int> order, int id)
    {
        await acquire;
        order.Add(id);
    }
}
