using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Serialization;
using static Propeller.Domain.Tasks.TaskCommand;

namespace Propeller.Manager.Demo;

/// <summary>
/// The main job until the end-to-end demo exists: a task stream created, started, dispatched and completed through the
/// command path, then its history read back and the state replayed at every version.
/// </summary>
internal static class EventStoreDemo
{
    public static async Task<int> RunAsync(IHost host, CancellationToken cancellationToken)
    {
        var services = host.Services;
        await services.GetRequiredService<Marten.IDocumentStore>().Storage.ApplyAllConfiguredChangesToDatabaseAsync().WaitAsync(cancellationToken);
        var commands = services.GetRequiredService<CommandHandler>();
        var loader = services.GetRequiredService<AggregateLoader>();
        var store = services.GetRequiredService<IEventStore>();
        var time = services.GetRequiredService<TimeProvider>();
        var serializer = services.GetRequiredService<EventSerializer>();

        var id = new TaskId(Guid.CreateVersion7());
        var stream = TaskAggregate.StreamId(id);
        var correlation = Guid.CreateVersion7().ToString();
        var spec = TaskSpec.Named("add") with
        {
            File = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL",
            CliArgs = new EquatableArray<string>(["--invoke", "main"]),
            Inputs = new EquatableArray<string>(["10", "32"]),
        };

        Console.WriteLine($"demo: task {id} (stream {stream})");
        TaskCommand[] steps =
        [
            new CreateTask(id, spec, time.GetUtcNow()),
            new StartTask(id, time.GetUtcNow()),
            new DispatchTask(id, "demo-proplet", time.GetUtcNow()),
            new RecordResult(id, "\"42\"", null, time.GetUtcNow()),
            new RecordResult(id, "\"42\"", null, time.GetUtcNow()),
        ];
        foreach (var step in steps)
        {
            var metadata = new EventMetadata(correlation, null, "demo", time.GetUtcNow());
            var result = await commands.HandleAsync(TaskAggregate.Decider, stream, step, metadata, cancellationToken);
            var outcome = result.Rejection is { } rejection ? $"rejected: {rejection.Reason}" : $"{result.Appended.Count} event(s), version {result.Version}";
            Console.WriteLine($"  {step.GetType().Name,-13} -> {outcome}; state {result.State.Status}");
        }

        var history = await store.ReadStreamAsync(stream, StreamReadOptions.All, cancellationToken)
            ?? throw new InvalidOperationException($"stream {stream} was not written");
        Console.WriteLine($"history of {stream} (version {history.Version}):");
        foreach (var e in history.Events)
        {
            Console.WriteLine($"  v{e.Version} {e.Metadata.Timestamp:O} {e.Type,-24} seq={e.Sequence} user={e.Metadata.UserId} correlation={e.Metadata.CorrelationId}");
            Console.WriteLine($"     {serializer.Serialize(e.Data).Json}");
        }

        Console.WriteLine("replayed state at each version:");
        for (var version = 1; version <= history.Version; version++)
        {
            var state = await loader.LoadAsync(TaskAggregate.Decider, stream, new StreamReadOptions(ToVersion: version), cancellationToken);
            Console.WriteLine($"  v{version}: status={state.State.Status} attempt={state.State.Attempt} proplet={state.State.PropletId ?? "-"} results={state.State.Results ?? "-"}");
        }

        var final = await loader.LoadAsync(TaskAggregate.Decider, stream, cancellationToken);
        // Results are stored as the JSON the proplet sent: a JSON string here, as the Rust proplet sends them.
        var answer = final.State.Results is { } json ? System.Text.Json.JsonSerializer.Deserialize<string>(json) : null;
        Console.WriteLine($"result: {answer}");
        return final.State.Status == Propeller.Domain.Tasks.TaskStatus.Completed && answer == "42" ? 0 : 1;
    }
}
