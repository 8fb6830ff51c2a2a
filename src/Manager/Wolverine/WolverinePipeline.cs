using JasperFx.CodeGeneration;
using Marten;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Wolverine;
using Wolverine;
using Wolverine.ErrorHandling;
using Wolverine.Marten;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// The Wolverine write side (MANAGER_PIPELINE=wolverine, ADR 0014), beside our own: Wolverine on Marten with its
/// transactional middleware, durable inbox/outbox tables in the event store's schema, the durable local queue
/// "broker", and the conflict retry policy.
/// </summary>
internal static class WolverinePipeline
{
    /// <summary>Integrates Wolverine with the Marten registration (its envelope tables beside Marten's).</summary>
    public static void IntegrateMarten(MartenServiceCollectionExtensions.MartenConfigurationExpression marten, string schema) =>
        marten.IntegrateWithWolverine(w => w.MessageStorageSchemaName = schema);

    public static void AddWolverinePipeline(this WebApplicationBuilder builder)
    {
        builder.Services.TryAddSingleton<CommandSessionServices>();
        builder.Services.TryAddSingleton<WolverinePlacement>();
        builder.Services.TryAddSingleton<WolverineTaskCommands>();
        builder.Host.UseWolverine(opts =>
        {
            opts.ApplicationAssembly = typeof(WolverinePipeline).Assembly;
            opts.ServiceName = "propeller-manager";

            // One node per database for now (Balanced mode, several nodes: ADR 0014, left).
            opts.Durability.Mode = DurabilityMode.Solo;
            opts.Policies.AutoApplyTransactions();
            opts.Policies.UseDurableLocalQueues();
            opts.PublishMessage<PublishToBroker>().ToLocalQueue("broker");
            opts.LocalQueue("broker").UseDurableInbox();

            // A lost race on a stream decides again on the new state (Marten's optimistic concurrency): as many tries
            // as our CommandHandler's and more, each after a short, jittered pause, so many writers on one stream
            // (twelve in the test) all get through.
            opts.OnException<JasperFx.ConcurrencyException>().RetryWithCooldown(
                [.. Enumerable.Range(0, 12).Select(i => TimeSpan.FromMilliseconds(Math.Min(2 << i, 100)))]).WithFullJitter();
            opts.OnException<Marten.Exceptions.ExistingStreamIdCollisionException>().RetryTimes(3);

            opts.CodeGeneration.TypeLoadMode = TypeLoadMode.Dynamic;
        });
    }
}

/// <summary>The task routes' way into the Wolverine pipeline: the request's metadata on the command, InvokeAsync, the outcome.</summary>
public sealed class WolverineTaskCommands
{
    public async Task<CommandResult<TaskEvent, TaskState>> SendAsync(TaskCommand command, HttpRequest request, IReadOnlyDictionary<string, string>? headers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(request);
        var user = request.Headers["X-User-Id"].FirstOrDefault();
        var correlation = request.Headers["X-Correlation-Id"].FirstOrDefault() ?? request.HttpContext.TraceIdentifier;
        var metadata = new EventMetadata(correlation, null, string.IsNullOrEmpty(user) ? null : user, command.At, headers);
        var bus = request.HttpContext.RequestServices.GetRequiredService<IMessageBus>();
        return await bus.InvokeAsync<CommandResult<TaskEvent, TaskState>>(new RunTaskCommand(command.TaskId, command, metadata), cancellationToken);
    }
}
