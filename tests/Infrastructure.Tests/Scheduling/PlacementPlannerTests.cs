using Microsoft.Extensions.Options;
using Propeller.Application.Plugins;
using Propeller.Application.Proplets;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Scheduling;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Domain.Tasks.TaskEvent;

namespace Propeller.Infrastructure.Tests.Scheduling;

/// <summary>A placement round with plugins: what on_before_dispatch's refusal leaves behind for the round's later tasks.</summary>
public sealed class PlacementPlannerTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 10, 0, 0, TimeSpan.Zero);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// Task A is refused by on_before_dispatch on p1, the least-loaded proplet; task B of the same round still goes to p1
    /// (nothing runs there). Before, A stayed counted on p1 and steered B away to p2.
    /// </summary>
    [Fact]
    public async Task GivenADispatchRefused_WhenTheRoundPlacesTheNextTask_ThenTheRefusedTaskDoesNotCountOnThatProplet()
    {
        var a = Scheduled("a");
        var b = Scheduled("b");
        var gate = new RefusingGate((task, proplet) => task == a.Id.ToString() && proplet == "p1" ? "quota exceeded" : null);
        using var planner = Planner(gate, View("p1", running: 0), View("p2", running: 0));

        var planned = await planner.PlanAsync([a, b], Ct);

        planned[0].Command.ShouldBeOfType<BlockDispatch>().Reason.ShouldBe("dispatch blocked by plugin: quota exceeded");
        planned[1].Command.ShouldBeOfType<DispatchTask>().PropletId.ShouldBe("p1");
    }

    /// <summary>
    /// A round whose select hook is held (a plugin running to its time limit) does not hold the next round: its
    /// on_before_proplet_select runs before the placement lock. Before, every round and start placement of the node waited
    /// for it, per task of the round.
    /// </summary>
    [Fact]
    public async Task GivenARoundWhoseSelectHookIsHeld_WhenAnotherRoundIsPlanned_ThenThatRoundIsPlacedMeanwhile()
    {
        var slow = Scheduled("slow");
        var gate = new HeldSelectGate(slow.Id.ToString());
        using var planner = Planner(gate, View("p1", running: 0), View("p2", running: 0));

        var held = planner.PlanAsync([slow], Ct);
        await gate.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        var other = await planner.PlanAsync([Scheduled("b")], Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        held.IsCompleted.ShouldBeFalse();
        gate.Release.SetResult();
        var slowPlanned = await held;

        other[0].Command.ShouldBeOfType<DispatchTask>().PropletId.ShouldBe("p1");
        slowPlanned[0].Command.ShouldBeOfType<DispatchTask>().PropletId.ShouldBe("p2", "the other round's dispatch is in flight on p1");
    }

    /// <summary>A refusal without a reason (the gate's default is the prefix itself) is said once: it read
    /// "dispatch blocked by plugin: dispatch blocked by plugin".</summary>
    [Fact]
    public async Task GivenADispatchRefusedWithoutAReason_WhenPlanned_ThenThePrefixIsNotRepeated()
    {
        var a = Scheduled("a");
        using var planner = Planner(new RefusingGate((_, _) => "dispatch blocked by plugin"), View("p1", running: 0));

        var planned = await planner.PlanAsync([a], Ct);

        planned[0].Command.ShouldBeOfType<BlockDispatch>().Reason.ShouldBe("dispatch blocked by plugin");
    }

    /// <summary>
    /// Two rounds planned before either commits (the task view still counts nothing on p1 or p2): the second goes to p2.
    /// Before, each round read the same loads and both went to p1, as did a start placed at once meanwhile.
    /// </summary>
    [Fact]
    public async Task GivenARoundNotCommittedYet_WhenTheNextRoundsArePlanned_ThenTheyCountItsDispatches()
    {
        var time = new MovableTime(Now);
        var inFlight = new PlacementsInFlight(time);
        using var planner = Planner(AllowAllPluginGate.Instance, time, inFlight, View("p1", running: 0), View("p2", running: 0), View("p3", running: 0));

        var first = await planner.PlanAsync([Scheduled("a")], Ct);
        var second = await planner.PlanAsync([Scheduled("b")], Ct);
        var atOnce = await planner.PlanAtOnceAsync(Scheduled("c"), Ct);

        first[0].Command.ShouldBeOfType<DispatchTask>().PropletId.ShouldBe("p1");
        second[0].Command.ShouldBeOfType<DispatchTask>().PropletId.ShouldBe("p2");
        atOnce.ShouldNotBeNull().Command.ShouldBeOfType<DispatchTask>().PropletId.ShouldBe("p3");
        inFlight.Count.ShouldBe(3);
    }

    /// <summary>
    /// A dispatch stops counting as in flight when its state commits (the view counts it then), or after
    /// <see cref="PlacementsInFlight.Expiry"/> when its transaction failed: neither is counted twice for ever.
    /// </summary>
    [Fact]
    public async Task GivenDispatchesInFlight_WhenOneCommitsAndOneNever_ThenNeitherCountsAnyLonger()
    {
        var time = new MovableTime(Now);
        var inFlight = new PlacementsInFlight(time);
        using var planner = Planner(AllowAllPluginGate.Instance, time, inFlight, View("p1", running: 0), View("p2", running: 0));
        var committed = (await planner.PlanAsync([Scheduled("a")], Ct))[0];
        await planner.PlanAsync([Scheduled("b")], Ct);

        inFlight.Settle(TaskAggregate.StreamId(committed.Task.Id));
        inFlight.Count.ShouldBe(1);
        time.Now += PlacementsInFlight.Expiry;
        var candidates = new List<PropletCandidate> { new("p1", true, 0, new HashSet<string>(), 0), new("p2", true, 0, new HashSet<string>(), 0) };
        inFlight.CountIn(candidates);

        candidates.ShouldAllBe(c => c.RunningTasks == 0);
        inFlight.Count.ShouldBe(0);
    }

    private static PlacementPlanner Planner(IPluginGate gate, TimeProvider time, PlacementsInFlight inFlight, params PropletView[] views) =>
        new(new FixedProplets(views), Options.Create(new SchedulerOptions { Policy = SchedulingPolicy.LeastLoaded }), time, gate, inFlight);

    private static PlacementPlanner Planner(IPluginGate gate, params PropletView[] views) =>
        new(new FixedProplets(views), Options.Create(new SchedulerOptions { Policy = SchedulingPolicy.LeastLoaded }), new FixedTime(Now), gate);

    private static PropletView View(string id, int running) =>
        new(new PropletId(id), id, PropletMetadata.Empty, Offline: false, LastAliveAt: Now, AliveHistory: [Now], RunningTasks: running);

    private static TaskState Scheduled(string name)
    {
        var id = new TaskId(Guid.CreateVersion7());
        return new TaskEvent[] { new TaskCreated(id, TaskSpec.Named(name) with { File = "AGFzbQEAAAA=" }, Now), new TaskStartRequested(id, 1, Now) }
            .Aggregate(TaskState.Initial, TaskDecider.Evolve);
    }

    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    private sealed class MovableTime(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>The registry's list, fixed (placement reads nothing else of it).</summary>
    private sealed class FixedProplets(IReadOnlyList<PropletView> views) : IPropletRegistry
    {
        public Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken) => Task.FromResult(views);

        public Task<PropletView?> GetAsync(PropletId id, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<PropletFleet> ListFleetAsync(CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<bool?> RecordHeartbeatAsync(PropletId id, DateTimeOffset at, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    /// <summary>Allows everything; the select hook of task <paramref name="heldTask"/> waits for <see cref="Release"/>.</summary>
    private sealed class HeldSelectGate(string heldTask) : IPluginGate
    {
        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(GateOutcome.Allow);

        public ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(EnrichOutcome.None);

        public async ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
        {
            if (task.Id == heldTask)
            {
                Entered.TrySetResult();
                await Release.Task.WaitAsync(cancellationToken);
            }

            return SelectOutcome.Allow;
        }

        public ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken) =>
            ValueTask.FromResult(DispatchOutcome.Allow);

        public void OnTaskStarted(PluginTaskInfo task)
        {
        }

        public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error)
        {
        }
    }

    /// <summary>Allows everything but the dispatches <c>refuse(task id, proplet id)</c> gives a reason for.</summary>
    private sealed class RefusingGate(Func<string, string, string?> refuse) : IPluginGate
    {
        public ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(GateOutcome.Allow);

        public ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(EnrichOutcome.None);

        public ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(SelectOutcome.Allow);

        public ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken) =>
            ValueTask.FromResult(refuse(task.Id, proplet.Id) is { } reason ? new DispatchOutcome(false, reason, new Dictionary<string, string>(), []) : DispatchOutcome.Allow);

        public void OnTaskStarted(PluginTaskInfo task)
        {
        }

        public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error)
        {
        }
    }
}
