using Propeller.Application.Changes;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Tests.Changes;

public sealed class ChangeSubscriptionTests
{
    private const int Metadata = 256 * 1024;

    /// <summary>A task notice carrying <see cref="Metadata"/> characters of metadata (half a MiB as UTF-16).</summary>
    private static ChangeNotice Large(int version)
    {
        var id = new TaskId(Guid.CreateVersion7());
        var spec = TaskSpec.Named("big") with { Metadata = $"{{\"blob\":\"{new string('x', Metadata)}\"}}" };
        return new ChangeNotice($"task-{id.Value}", version, TaskState.Initial with { Exists = true, Id = id, Spec = spec });
    }

    [Fact]
    public void ANoticeSize_CountsTheStatesLargeStrings_WithoutSerializingIt()
    {
        var notice = Large(1);

        notice.Bytes.ShouldBeGreaterThan(2L * Metadata);
        notice.Bytes.ShouldBeLessThan((2L * Metadata) + (4 * 1024));
        new ChangeNotice("task-x", 1, null).Bytes.ShouldBe(ChangeNotice.Overhead);
    }

    [Fact]
    public async Task GivenASmallByteBudget_WhenLargeNoticesOverflowItBeforeTheCount_ThenTheReaderIsToldToReload_AndTheBufferStaysUnderIt()
    {
        var budget = 3 * Large(0).Bytes;
        using var subscription = new ChangeSubscription(4096, budget, _ => { });

        for (var version = 1; version <= 20; version++)
        {
            subscription.Post(Large(version));
        }

        // Well under the count (4096): only the bytes can have stopped them.
        subscription.BufferedBytes.ShouldBeLessThanOrEqualTo(budget);
        subscription.Reader.Count.ShouldBe(3);
        subscription.Overflowed().ShouldBeTrue();
        subscription.Overflowed().ShouldBeFalse();

        var read = new List<long>();
        while (subscription.Reader.TryRead(out var notice))
        {
            read.Add(notice.Version);
        }

        // The oldest kept, the newer dropped (the reader reloads after its backlog), and their bytes given back.
        read.ShouldBe([1, 2, 3]);
        subscription.BufferedBytes.ShouldBe(0);

        subscription.Post(Large(21));
        (await subscription.Reader.ReadAsync(TestContext.Current.CancellationToken)).Version.ShouldBe(21);
        subscription.BufferedBytes.ShouldBe(0);
        subscription.Overflowed().ShouldBeFalse();
    }

    [Fact]
    public void ANoticeLargerThanTheBudget_GoesThroughAnEmptyBuffer_NotAFullOne()
    {
        using var subscription = new ChangeSubscription(16, ChangeNotice.Overhead, _ => { });

        subscription.Post(Large(1));
        subscription.Post(Large(2));

        subscription.Reader.Count.ShouldBe(1);
        subscription.Overflowed().ShouldBeTrue();
        subscription.Reader.TryRead(out var first).ShouldBeTrue();
        first.Version.ShouldBe(1);
        subscription.BufferedBytes.ShouldBe(0);
    }

    [Fact]
    public void ACountOverflow_GivesTheDroppedNoticesBytesBack()
    {
        using var subscription = new ChangeSubscription(2, _ => { });

        for (var version = 1; version <= 5; version++)
        {
            subscription.Post(new ChangeNotice("task-x", version, null));
        }

        subscription.Overflowed().ShouldBeTrue();
        subscription.BufferedBytes.ShouldBe(2 * ChangeNotice.Overhead);
    }
}
