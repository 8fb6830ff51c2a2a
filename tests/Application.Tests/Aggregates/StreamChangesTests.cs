using Propeller.Application.Aggregates;

namespace Propeller.Application.Tests.Aggregates;

public sealed class StreamChangesTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AWatch_SeesTheNewestAppendSinceItsLastRead_AndIgnoresOlderOnesReportedLate()
    {
        var changes = new StreamChanges();
        using var watch = changes.Start("task-1");

        changes.Notify("task-1", 3, "v3");
        changes.Notify("task-1", 5, "v5");
        changes.Notify("task-1", 4, "v4");
        changes.Notify("task-2", 9, "other stream");

        (await watch.NextAsync(TimeSpan.FromSeconds(10), Ct)).ShouldBe((true, "v5"));
        (await watch.NextAsync(TimeSpan.FromMilliseconds(20), Ct)).ShouldBe((false, null));
    }

    [Fact]
    public async Task AWaitingWatch_IsWokenByTheNextAppend()
    {
        var changes = new StreamChanges();
        using var watch = changes.Start("task-1");

        var next = watch.NextAsync(TimeSpan.FromSeconds(10), Ct);
        changes.Notify("task-1", 1, "created");

        (await next).ShouldBe((true, "created"));
    }

    [Fact]
    public void DisposedWatches_AreForgotten()
    {
        var changes = new StreamChanges();
        var first = changes.Start("task-1");
        var second = changes.Start("task-1");
        changes.WatchedStreams.ShouldBe(1);

        first.Dispose();
        changes.WatchedStreams.ShouldBe(1);
        second.Dispose();
        changes.WatchedStreams.ShouldBe(0);
        changes.Notify("task-1", 1, "nobody listens");
    }
}
