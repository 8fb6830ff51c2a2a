using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using MQTTnet.Protocol;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Broker;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Mqtt;

namespace Propeller.Infrastructure.Tests.Mqtt;

/// <summary>
/// Which failures the inbound handler tries again before the broker connection acknowledges a message: PostgreSQL's
/// transient errors and lost races, also when Marten or Wolverine pass them on wrapped in an error of their own; a
/// wrong statement is logged and acknowledged instead of holding its key's later messages forever.
/// </summary>
public sealed class InboundHandlerRetryTests
{
    private const string Base = "m/d/c/ch";

    public static TheoryData<string, bool> Failures => new()
    {
        { "deadlock, wrapped", true },
        { "connection refused, wrapped", true },
        { "lost race, wrapped", true },
        { "unique violation", false },
    };

    [Theory]
    [MemberData(nameof(Failures))]
    public async Task GivenAResultWhoseFirstRecordingFails_WhenTheFailureIsOneAnotherTryCures_ThenItIsRecordedOnTheNextTry(string failure, bool retried)
    {
        var commands = new FailingOnce(failure switch
        {
            "deadlock, wrapped" => new InvalidOperationException("Marten's wrapper", new PostgresException("deadlock detected", "ERROR", "ERROR", PostgresErrorCodes.DeadlockDetected)),
            "connection refused, wrapped" => new InvalidOperationException("Marten's wrapper", new NpgsqlException("Failed to connect", new System.Net.Sockets.SocketException(111))),
            "lost race, wrapped" => new InvalidOperationException("Wolverine's wrapper", new JasperFx.ConcurrencyException("lost a race")),
            _ => new PostgresException("duplicate key", "ERROR", "ERROR", PostgresErrorCodes.UniqueViolation),
        });
        await using var dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Username=x;Password=x");
        var handler = new InboundHandler(
            commands, new NoProplets(), dataSource, Options.Create(new EventStoreOptions()), Options.Create(new MqttBridgeOptions { Tenant = "d", Channel = "ch" }),
            TimeProvider.System, NullLogger<InboundHandler>.Instance);
        var result = Encoding.UTF8.GetBytes($$"""{"task_id":"{{Guid.NewGuid()}}","proplet_id":"p1","results":"3","error":null}""");

        await handler.AcceptBatchAsync([new ReceivedMessage($"{Base}/control/proplet/results", result, MqttQualityOfServiceLevel.AtLeastOnce, false, false)], TestContext.Current.CancellationToken);

        commands.Calls.ShouldBe(retried ? 2 : 1);
    }

    private sealed class FailingOnce(Exception failure) : IInboundCommands
    {
        public int Calls { get; private set; }

        public Task RecordResultAsync(TaskCommand.RecordResult command, EventMetadata metadata, CancellationToken cancellationToken) => Next();

        public Task RecordResultsAsync(IReadOnlyList<(TaskCommand.RecordResult Command, EventMetadata Metadata)> results, CancellationToken cancellationToken) => Next();

        public Task HandlePropletAsync(PropletCommand command, EventMetadata metadata, CancellationToken cancellationToken) => Next();

        private Task Next() => ++Calls == 1 ? Task.FromException(failure) : Task.CompletedTask;
    }

    private sealed class NoProplets : IPropletRegistry
    {
        public Task<PropletView?> GetAsync(PropletId id, CancellationToken cancellationToken) => Task.FromResult<PropletView?>(null);

        public Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<PropletView>>([]);

        public Task<bool?> RecordHeartbeatAsync(PropletId id, DateTimeOffset at, CancellationToken cancellationToken) => Task.FromResult<bool?>(null);
    }
}
