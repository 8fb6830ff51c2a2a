using Propeller.Application.EventStore;
using Propeller.Domain.Tasks;
using static Propeller.Domain.Tasks.TaskEvent;

namespace Propeller.Infrastructure.Tests.Support;

internal static class TestEvents
{
    public static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);

    public static TaskId NewId() => new(Guid.CreateVersion7());

    public static TaskCreated Created(TaskId id, string name = "add") => new(id, TaskSpec.Named(name), T0);

    /// <summary>A distinguishable event: the attempt number carries the payload.</summary>
    public static TaskStartRequested Numbered(TaskId id, int n) => new(id, n, T0.AddSeconds(n));

    public static EventMetadata Meta(int seconds = 0) => EventMetadata.At(T0.AddSeconds(seconds));
}
