using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Messaging;
using Propeller.Infrastructure.Mqtt;
using Propeller.Manager.Wolverine;
using Wolverine;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// The pipeline's error rules each count only their own failures (ADR 0014, decision 14). Wolverine numbers a rule's
/// slots by the envelope's attempts of any kind, so a mix of failures used up one rule's tries with another's: a
/// scheduling message that lost seven stream races then met a transient PostgreSQL error, and a start that timed out
/// four times then was refused once, were dead letters at once instead of being tried again.
/// </summary>
public sealed class ErrorRuleTests : IAsyncLifetime
{
    private readonly string _tenant = "e" + Guid.NewGuid().ToString("N")[..12];
    private readonly ScriptedPublisher _publisher = new();
    private ManagerServer _server = null!;

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A schema per test: wolverine_error_rules_{the test's initials}.</summary>
    private static string Schema => "wolverine_error_rules_" + new string([.. (TestContext.Current.TestMethod?.MethodName ?? "x").Where(char.IsUpper)]).ToLowerInvariant();

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(Schema, new Dictionary<string, string>
    {
        ["MANAGER_MQTT_ADDRESS"] = Broker,
        ["MANAGER_TENANT_ID"] = _tenant,
        ["MANAGER_CHANNEL_ID"] = "ch",
        ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
    }, services: s => s.AddSingleton<IMessagePublisher>(sp => _publisher.Around(sp.GetRequiredService<ManagerMqtt>())));

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    [Fact]
    public async Task GivenAStartThatTimedOutFourTimes_WhenTheBrokerRefusesItOnce_ThenItIsTriedAgainAndPublished_NotADeadLetter()
    {
        var topic = $"m/{_tenant}/c/ch/test/error-rules";
        _publisher.Script(topic,
            new TimeoutException("no acknowledgement, for the test"), new TimeoutException("no acknowledgement, for the test"),
            new TimeoutException("no acknowledgement, for the test"), new TimeoutException("no acknowledgement, for the test"),
            new InvalidOperationException("the broker refused it, for the test"));

        await _server.Services.GetRequiredService<IMessageBus>().PublishAsync(new PublishToBroker(topic, Encoding.UTF8.GetBytes("{}"), null));

        await UntilAsync("the publish or a dead letter", async () => _publisher.Published(topic) >= 1 || await DeadLettersAsync() > 0);
        (await DeadLettersAsync()).ShouldBe(0);
        _publisher.Calls(topic).ShouldBe(6);
        _publisher.Published(topic).ShouldBe(1);
    }

    [Fact]
    public async Task GivenASchedulingMessageThatLostSevenRaces_WhenPostgreSQLFailsItOnce_ThenItIsTriedAgainAndHandled_NotADeadLetter()
    {
        var failures = new ConcurrentQueue<Exception>(
            [.. Enumerable.Range(0, 7).Select(_ => (Exception)new JasperFx.ConcurrencyException("a lost race, for the test", null!)),
             new Npgsql.NpgsqlException("PostgreSQL went away, for the test", new System.Net.Sockets.SocketException(104))]);
        var calls = 0;
        _server.Services.GetRequiredService<WolverineScheduling>().SweepPageHook = _ =>
        {
            Interlocked.Increment(ref calls);
            return failures.TryDequeue(out var failure) ? Task.FromException(failure) : Task.CompletedTask;
        };

        await _server.Services.GetRequiredService<IMessageBus>().PublishAsync(new PlaceSweepPage([]));

        await UntilAsync("the ninth try or a dead letter", async () => Volatile.Read(ref calls) >= 9 || await DeadLettersAsync() > 0);
        (await DeadLettersAsync()).ShouldBe(0);
        Volatile.Read(ref calls).ShouldBe(9);
        failures.ShouldBeEmpty();
    }

    /// <summary>
    /// A durable message whose transient failures go on (a statement that always hits its timeout is "transient" too) is
    /// tried again later while it is under a day old, and is then a dead letter, listed and replayable; it was scheduled
    /// again every 5 minutes for ever, unseen.
    /// </summary>
    [Fact]
    public void GivenTransientFailures_WhenTheMessageIsADayOld_ThenItIsADeadLetter_NotRetriedForEver()
    {
        var now = DateTimeOffset.UtcNow;
        var failure = new Npgsql.NpgsqlException("a statement timeout, for the test", new TimeoutException());

        var young = WolverinePipeline.AfterTransientRetries(failure, new Envelope(new PlaceSweepPage([])) { SentAt = now.AddHours(-23), Attempts = 40 }, now);
        var old = WolverinePipeline.AfterTransientRetries(failure, new Envelope(new PlaceSweepPage([])) { SentAt = now.AddDays(-1), Attempts = 40 }, now);

        young.GetType().Name.ShouldBe("ScheduledRetryContinuation"); // Wolverine's own continuations are internal
        old.GetType().Name.ShouldBe("MoveToErrorQueue");
    }

    private async Task<long> DeadLettersAsync()
    {
        var dataSource = _server.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await using var command = dataSource.CreateCommand($"select count(*) from {Schema}.wolverine_dead_letters");
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }

    private static async Task UntilAsync(string what, Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!await condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, $"waited 120 s for {what}");
            await Task.Delay(50, Ct);
        }
    }

    /// <summary>Fails the publishes to a topic with the scripted exceptions in turn, then publishes them; others pass through.</summary>
    private sealed class ScriptedPublisher
    {
        private readonly ConcurrentDictionary<string, ConcurrentQueue<Exception>> _scripts = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, int> _calls = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, int> _published = new(StringComparer.Ordinal);

        public void Script(string topic, params Exception[] failures) => _scripts[topic] = new ConcurrentQueue<Exception>(failures);

        public int Calls(string topic) => _calls.GetValueOrDefault(topic);

        public int Published(string topic) => _published.GetValueOrDefault(topic);

        public IMessagePublisher Around(IMessagePublisher inner) => new Publisher(this, inner);

        private sealed class Publisher(ScriptedPublisher script, IMessagePublisher inner) : IMessagePublisher
        {
            public async Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
            {
                if (!script._scripts.TryGetValue(message.Destination, out var failures))
                {
                    await inner.PublishAsync(message, cancellationToken);
                    return;
                }

                script._calls.AddOrUpdate(message.Destination, 1, (_, n) => n + 1);
                if (failures.TryDequeue(out var failure))
                {
                    throw failure;
                }

                await inner.PublishAsync(message, cancellationToken);
                script._published.AddOrUpdate(message.Destination, 1, (_, n) => n + 1);
            }
        }
    }
}
