using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Infrastructure.Messaging;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.Messaging;

public sealed class OutboxTests : IAsyncLifetime
{
    private readonly WorkSignals _signals = new();
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("outbox");

    public ValueTask DisposeAsync()
    {
        _signals.Dispose();
        return _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static OutgoingMessage Message(string topic, string text) =>
        new(topic, Encoding.UTF8.GetBytes(text), new Dictionary<string, string> { ["correlation_id"] = "c1" });

    private OutboxRelay Relay(IMessagePublisher publisher, Action<OutboxOptions>? configure = null)
    {
        var options = new OutboxOptions { RetryDelay = TimeSpan.FromMilliseconds(1), BatchSize = 10 };
        configure?.Invoke(options);
        return new OutboxRelay(_db.DataSource, publisher, _db.Options, Options.Create(options), NullLogger<OutboxRelay>.Instance, _signals);
    }

    private async Task AppendAsync(string stream, params OutgoingMessage[] outbox) =>
        await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Created(NewId())], Meta(), outbox, Ct);

    [Fact]
    public async Task MessagesWrittenWithTheEvents_ArePublishedOnceInOrder_AndMarkedSent()
    {
        await AppendAsync("task-a", Message("m/start", "one"), Message("m/start", "two"));
        await AppendAsync("task-b", Message("m/stop", "three"));
        var publisher = new RecordingPublisher();
        var relay = Relay(publisher);

        (await relay.RelayOnceAsync(Ct)).ShouldBe(3);
        (await relay.RelayOnceAsync(Ct)).ShouldBe(0);

        publisher.Texts.ShouldBe(["one", "two", "three"]);
        publisher.Messages[0].Headers!["correlation_id"].ShouldBe("c1");
        (await relay.DepthAsync(Ct)).ShouldBe(0);
    }

    [Fact]
    public async Task FailedAppend_WritesNoOutboxRow()
    {
        await AppendAsync("task-a");

        await Should.ThrowAsync<ConcurrencyException>(() =>
            _db.Store.AppendAsync("task-a", "task", ExpectedVersion.NoStream, [Created(NewId())], Meta(), [Message("m/start", "lost")], Ct));

        (await _db.ScalarAsync<long>("select count(*) from {schema}.outbox")).ShouldBe(0);
    }

    [Fact]
    public async Task FailingDestination_IsRetriedWithBackoff_ThenDeadLettered_NeverDropped()
    {
        await AppendAsync("task-a", Message("m/start", "x"));
        var relay = Relay(new FailingPublisher(), o => o.MaxAttempts = 3);

        for (var i = 0; i < 3; i++)
        {
            await _db.ExecuteAsync("update {schema}.outbox set next_attempt_at = now()");
            (await relay.RelayOnceAsync(Ct)).ShouldBe(1);
        }

        (await relay.RelayOnceAsync(Ct)).ShouldBe(0);
        (await _db.ScalarAsync<int>("select attempts from {schema}.outbox")).ShouldBe(3);
        (await _db.ScalarAsync<string>("select last_error from {schema}.outbox")).ShouldBe("broker down");
        (await _db.ScalarAsync<bool>("select dead_at is not null and sent_at is null from {schema}.outbox")).ShouldBeTrue();
    }

    [Fact]
    public async Task AfterAFailure_TheRestWaitsForALaterRound_InOrder()
    {
        await AppendAsync("task-a", Message("m", "1"), Message("m", "2"), Message("m", "3"));
        var publisher = new FlakyPublisher(failOn: "2");
        var relay = Relay(publisher);

        await relay.RelayOnceAsync(Ct);
        await _db.ExecuteAsync("update {schema}.outbox set next_attempt_at = now()");
        await relay.RelayOnceAsync(Ct);

        publisher.Texts.ShouldBe(["1", "2", "3"]);
    }

    [Fact]
    public async Task ClaimOfACrashedRelay_Expires_AndTheMessageIsSentAgain()
    {
        await AppendAsync("task-a", Message("m", "again"));
        await _db.ExecuteAsync("update {schema}.outbox set claimed_until = now() + interval '1 hour'");
        var publisher = new RecordingPublisher();
        var relay = Relay(publisher);

        (await relay.RelayOnceAsync(Ct)).ShouldBe(0);
        await _db.ExecuteAsync("update {schema}.outbox set claimed_until = now() - interval '1 second'");
        (await relay.RelayOnceAsync(Ct)).ShouldBe(1);

        publisher.Texts.ShouldBe(["again"]);
    }

    [Fact]
    public async Task TwoRelays_ShareTheWork_EachMessageSentOnce()
    {
        for (var i = 0; i < 50; i++)
        {
            await AppendAsync($"task-{i}", Message("m", $"{i}a"), Message("m", $"{i}b"), Message("m", $"{i}c"), Message("m", $"{i}d"));
        }

        var publisher = new RecordingPublisher();
        var a = Relay(publisher);
        var b = Relay(publisher);
        await Task.WhenAll(Task.Run(() => DrainAsync(a), Ct), Task.Run(() => DrainAsync(b), Ct));

        publisher.Texts.Count.ShouldBe(200);
        publisher.Texts.Distinct().Count().ShouldBe(200);

        static async Task DrainAsync(OutboxRelay relay)
        {
            while (await relay.RelayOnceAsync(Ct) > 0)
            {
            }
        }
    }

    private sealed class RecordingPublisher : IMessagePublisher
    {
        public ConcurrentQueue<OutgoingMessage> Queue { get; } = new();

        public List<OutgoingMessage> Messages => [.. Queue];

        public List<string> Texts => [.. Queue.Select(m => Encoding.UTF8.GetString(m.Payload.Span))];

        public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
        {
            Queue.Enqueue(message);
            return Task.CompletedTask;
        }
    }

    private sealed class FailingPublisher : IMessagePublisher
    {
        public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken) => throw new IOException("broker down");
    }

    private sealed class FlakyPublisher(string failOn) : IMessagePublisher
    {
        private bool _failed;

        public List<string> Texts { get; } = [];

        public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
        {
            var text = Encoding.UTF8.GetString(message.Payload.Span);
            if (text == failOn && !_failed)
            {
                _failed = true;
                throw new IOException("once");
            }

            Texts.Add(text);
            return Task.CompletedTask;
        }
    }
}
