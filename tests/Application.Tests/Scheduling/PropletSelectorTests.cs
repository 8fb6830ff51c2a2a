using Propeller.Application.Scheduling;

namespace Propeller.Application.Tests.Scheduling;

public sealed class PropletSelectorTests
{
    private static PropletCandidate Proplet(string id, bool alive = true, int running = 0, ulong memory = 1024, params string[] tags) =>
        new(id, alive, running, tags.ToHashSet(), memory);

    private static Placement Select(SchedulingPolicy policy, PlacementRequest request, params PropletCandidate[] proplets)
    {
        return PropletSelector.Select(policy, request, proplets, new RoundRobinCursors());
    }

    [Fact]
    public void RoundRobin_CyclesOverAliveProplets_InIdOrder()
    {
        PropletCandidate[] proplets = [Proplet("c"), Proplet("a"), Proplet("b", alive: false), Proplet("d")];
        var cursor = new RoundRobinCursors();

        var picks = Enumerable.Range(0, 6).Select(_ => PropletSelector.Select(SchedulingPolicy.RoundRobin, PlacementRequest.Any, proplets, cursor).PropletId).ToList();

        picks.ShouldBe(["a", "c", "d", "a", "c", "d"]);
    }

    /// <summary>
    /// Tasks that alternate between two sets of eligible proplets (tags) each rotate over their own set: with one
    /// shared position every gpu task went to g1 and every cpu task to c2.
    /// </summary>
    [Fact]
    public void RoundRobin_TasksAlternatingBetweenTwoSets_EachRotateOverTheirOwnSet()
    {
        PropletCandidate[] proplets = [Proplet("c1", tags: "cpu"), Proplet("c2", tags: "cpu"), Proplet("g1", tags: "gpu"), Proplet("g2", tags: "gpu")];
        var cursors = new RoundRobinCursors();
        var gpu = PlacementRequest.Any with { RequiredTags = new HashSet<string> { "gpu" } };
        var cpu = PlacementRequest.Any with { RequiredTags = new HashSet<string> { "cpu" } };

        var picks = Enumerable.Range(0, 8).Select(i => PropletSelector.Select(SchedulingPolicy.RoundRobin, i % 2 == 0 ? gpu : cpu, proplets, cursors).PropletId).ToList();

        picks.ShouldBe(["g1", "c1", "g2", "c2", "g1", "c1", "g2", "c2"]);
    }

    [Fact]
    public void LeastLoaded_PicksTheFewestRunningTasks_TiesByIdOrder()
    {
        Select(SchedulingPolicy.LeastLoaded, PlacementRequest.Any, Proplet("a", running: 3), Proplet("b", running: 1), Proplet("c", running: 1))
            .PropletId.ShouldBe("b");
    }

    [Fact]
    public void Priority_ImportantTasksTakeTheLeastLoaded_LowPriorityTasksRotate()
    {
        PropletCandidate[] proplets = [Proplet("a", running: 5), Proplet("b", running: 0), Proplet("c", running: 2)];
        var cursor = new RoundRobinCursors();
        var high = PlacementRequest.Any with { Priority = 90 };
        var low = PlacementRequest.Any with { Priority = 10 };

        PropletSelector.Select(SchedulingPolicy.Priority, high, proplets, cursor).PropletId.ShouldBe("b");
        PropletSelector.Select(SchedulingPolicy.Priority, PlacementRequest.Any, proplets, cursor).PropletId.ShouldBe("b");
        var lows = Enumerable.Range(0, 3).Select(_ => PropletSelector.Select(SchedulingPolicy.Priority, low, proplets, cursor).PropletId).ToList();
        lows.ShouldBe(["a", "b", "c"]);
    }

    [Fact]
    public void NoAliveProplet_TheTaskWaitsAndSaysWhy()
    {
        var placement = Select(SchedulingPolicy.RoundRobin, PlacementRequest.Any, Proplet("a", alive: false));

        placement.PropletId.ShouldBeNull();
        placement.WaitReason.ShouldBe("no active proplets available");
    }

    [Fact]
    public void TagsAndMemory_FilterTheCandidates()
    {
        var request = new PlacementRequest(null, new HashSet<string> { "gpu" }, 2048);

        Select(SchedulingPolicy.RoundRobin, request, Proplet("a", memory: 4096), Proplet("b", memory: 1024, tags: "gpu"), Proplet("c", memory: 4096, tags: ["gpu", "arm"]))
            .PropletId.ShouldBe("c");
        Select(SchedulingPolicy.RoundRobin, request, Proplet("a", memory: 4096))
            .WaitReason.ShouldBe("no proplet satisfies the required tags and memory");
    }

    [Fact]
    public void PinnedProplet_IsUsedWhenAlive_RegardlessOfConstraints()
    {
        var request = new PlacementRequest("b", new HashSet<string> { "gpu" }, ulong.MaxValue);

        Select(SchedulingPolicy.LeastLoaded, request, Proplet("a"), Proplet("b", running: 9)).PropletId.ShouldBe("b");
        Select(SchedulingPolicy.LeastLoaded, request, Proplet("b", alive: false)).WaitReason.ShouldBe("pinned proplet b is not alive");
        Select(SchedulingPolicy.LeastLoaded, request, Proplet("a")).WaitReason.ShouldBe("pinned proplet b is unknown");
    }

    [Fact]
    public void DispatchOrder_IsPriorityThenAge()
    {
        var t0 = DateTimeOffset.UnixEpoch;
        (string Name, int Priority, DateTimeOffset At)[] pending = [("old-low", 10, t0), ("new-high", 90, t0.AddSeconds(5)), ("old-high", 90, t0.AddSeconds(1))];

        PropletSelector.InDispatchOrder(pending, p => p.Priority, p => p.At).Select(p => p.Name).ShouldBe(["old-high", "new-high", "old-low"]);
    }
}
