using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Domain.Tasks.TaskEvent;
using static Propeller.Domain.Tests.Tasks.TaskSpecification;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Domain.Tests.Tasks;

public sealed class TaskDeciderTests
{
    private static readonly TaskId Id = new(Guid.Parse("0194a1b2-0000-7000-8000-000000000001"));
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);
    private static readonly TaskSpec Spec = TaskSpec.Named("add") with
    {
        File = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL",
        Inputs = new EquatableArray<string>(["10", "32"]),
        CliArgs = new EquatableArray<string>(["--invoke", "main"]),
        Env = new EquatableMap([new("K", "V")]),
    };

    private static DateTimeOffset At(int seconds) => T0.AddSeconds(seconds);

    private static TaskCreated Created => new(Id, Spec, T0);

    private static TaskStartRequested StartRequested(int attempt = 1) => new(Id, attempt, At(1));

    private static TaskDispatched Dispatched(int attempt = 1) => new(Id, attempt, "proplet-1", At(2));

    [Fact]
    public void GivenCreated_WhenStartTaskByAUser_ThenTheRequesterIsKept() =>
        Given(Created).When(new StartTask(Id, At(1), "alice")).Then(new TaskStartRequested(Id, 1, At(1), "alice")).RequestedBy.ShouldBe("alice");

    [Fact]
    public void GivenScheduled_WhenAPluginBlocksTheDispatch_ThenTheAttemptFailsWithTheReason()
    {
        var state = Given(Created, StartRequested()).When(new BlockDispatch(Id, "dispatch blocked by plugin: quota", At(2)))
            .Then(new TaskFailed(Id, 1, "dispatch blocked by plugin: quota", At(2)));

        state.Status.ShouldBe(TaskStatus.Failed);
        Given(Created).When(new BlockDispatch(Id, "late", At(2))).Then();
    }

    [Fact]
    public void GivenScheduled_WhenDispatchedWithExtraEnv_ThenTheEnvIsMergedAndKept()
    {
        var extra = new EquatableMap([new("K", "plugin"), new("REGION", "eu")]);

        var state = Given(Created, StartRequested()).When(new DispatchTask(Id, "proplet-1", At(2), extra))
            .Then(new TaskDispatched(Id, 1, "proplet-1", At(2), extra));

        state.Spec!.Env["K"].ShouldBe("plugin");
        state.Spec.Env["REGION"].ShouldBe("eu");
    }

    [Fact]
    public void GivenNothing_WhenCreateTask_ThenTaskCreated()
    {
        var state = Given().When(new CreateTask(Id, Spec, T0)).Then(new TaskCreated(Id, Spec, T0));

        state.Exists.ShouldBeTrue();
        state.Status.ShouldBe(TaskStatus.Pending);
        state.Attempt.ShouldBe(0);
    }

    [Fact]
    public void GivenCreated_WhenCreateTaskAgainWithSameSpec_ThenNothing() =>
        Given(Created).When(new CreateTask(Id, Spec with { Inputs = new EquatableArray<string>(["10", "32"]) }, At(5))).Then();

    [Fact]
    public void GivenCreated_WhenCreateTaskWithOtherSpec_ThenConflict() =>
        Given(Created).When(new CreateTask(Id, Spec with { Name = "other" }, At(5))).ThenRejected(RejectionKind.Conflict);

    /// <summary>A task stored with depends_on before a create refused it is not started with its dependencies ignored:
    /// no workflow coordinator exists yet.</summary>
    [Fact]
    public void GivenCreatedWithDependencies_WhenStartTask_ThenConflict()
    {
        var dependent = new TaskCreated(Id, Spec with { DependsOn = new EquatableArray<string>(["other-task"]), WorkflowId = "wf-1" }, T0);

        Given(dependent).When(new StartTask(Id, At(1))).ThenRejected(RejectionKind.Conflict).Reason
            .ShouldBe($"task {Id} depends on other tasks; workflows are not implemented yet");
        Given(dependent, StartRequested(), Dispatched(), new TaskFailed(Id, 1, "ran before", At(3))).When(new StartTask(Id, At(4))).ThenRejected(RejectionKind.Conflict);
    }

    [Fact]
    public void GivenNothing_WhenStartTask_ThenNotFound() =>
        Given().When(new StartTask(Id, T0)).ThenRejected(RejectionKind.NotFound).Reason.ShouldContain(Id.ToString());

    [Fact]
    public void GivenCreated_WhenStartTask_ThenStartRequestedAsFirstAttempt()
    {
        var state = Given(Created).When(new StartTask(Id, At(1))).Then(new TaskStartRequested(Id, 1, At(1)));

        state.Status.ShouldBe(TaskStatus.Scheduled);
        state.Attempt.ShouldBe(1);
    }

    [Fact]
    public void GivenStartRequested_WhenStartTask_ThenNothing() =>
        Given(Created, StartRequested()).When(new StartTask(Id, At(3))).Then();

    [Fact]
    public void GivenRunning_WhenStartTask_ThenNothing() =>
        Given(Created, StartRequested(), Dispatched()).When(new StartTask(Id, At(3))).Then();

    /// <summary>
    /// Dispatched back to the same proplet after it was taken for gone: the "stopped" result of the earlier dispatch's
    /// run (its stop, sent while the task waited, arrived before the new start) names that dispatch and is ignored; the
    /// new dispatch's results are recorded, and a result naming no dispatch (the original proplet) as before.
    /// </summary>
    [Fact]
    public void GivenDispatchedAgainToTheSameProplet_WhenAResultOfTheEarlierDispatchArrives_ThenItIsIgnored()
    {
        var again = new TaskEvent[] { Created, StartRequested(), Dispatched(), new TaskRedispatchRequested(Id, 1, "proplet-1", "gone", 1, At(5)), new TaskDispatched(Id, 1, "proplet-1", At(6)) };
        Given(again).When(new RecordResult(Id, null, "Task x was stopped before completion", At(7), "proplet-1", 1, Dispatch: 1))
            .Then(new TaskResultIgnored(Id, 1, "result of dispatch 1; the task is on dispatch 2", At(7))).Status.ShouldBe(TaskStatus.Running);
        Given(again).When(new RecordResult(Id, "\"42\"", null, At(7), "proplet-1", 1, Dispatch: 2))
            .Then(new TaskCompleted(Id, 1, "\"42\"", At(7))).Status.ShouldBe(TaskStatus.Completed);
        Given(again).When(new RecordResult(Id, null, "boom", At(7), "proplet-1", 1))
            .Then(new TaskFailed(Id, 1, "boom", At(7))).Status.ShouldBe(TaskStatus.Failed);
    }

    /// <summary>A serving daemon or HTTP proxy still runs on its proplet: a start is a no-op as for a running task (a new
    /// attempt elsewhere would leave the first run serving beside it); once stopped or ended, a start is a new attempt.</summary>
    [Fact]
    public void GivenServing_WhenStartTask_ThenNothing_AndANewAttemptOnceItsRunEnded()
    {
        var serving = new TaskEvent[] { Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "\"started at port 8080\"", At(3), true) };
        Given(serving).When(new StartTask(Id, At(4))).Then().IsServing.ShouldBeTrue();
        Given([.. serving, new TaskStopped(Id, 1, "stopped by user", At(4))]).When(new StartTask(Id, At(5))).Then(new TaskStartRequested(Id, 2, At(5)));
        Given([.. serving, new TaskServingEnded(Id, 1, "\"bye\"", At(4))]).When(new StartTask(Id, At(5))).Then(new TaskStartRequested(Id, 2, At(5)));
    }

    [Fact]
    public void GivenStartRequested_WhenDispatchTask_ThenDispatchedAndRunning()
    {
        var state = Given(Created, StartRequested()).When(new DispatchTask(Id, "proplet-1", At(2))).Then(Dispatched());

        state.Status.ShouldBe(TaskStatus.Running);
        state.PropletId.ShouldBe("proplet-1");
        state.StartTime.ShouldBe(At(2));
    }

    [Fact]
    public void GivenScheduled_WhenDeferDispatch_ThenDeferredOncePerReason_AndDispatchClearsIt()
    {
        var deferred = new TaskDispatchDeferred(Id, 1, "no active proplets available", At(2));

        Given(Created, StartRequested()).When(new DeferDispatch(Id, "no active proplets available", At(2))).Then(deferred)
            .WaitReason.ShouldBe("no active proplets available");
        Given(Created, StartRequested(), deferred).When(new DeferDispatch(Id, "no active proplets available", At(3))).Then();
        Given(Created, StartRequested(), deferred).When(new DispatchTask(Id, "proplet-1", At(4))).Then(new TaskDispatched(Id, 1, "proplet-1", At(4)))
            .WaitReason.ShouldBeNull();
        Given(Created, StartRequested(), Dispatched()).When(new DeferDispatch(Id, "late", At(5))).Then();
    }

    [Fact]
    public void GivenRunningOnProplet_WhenDispatchTaskToSameProplet_ThenNothing() =>
        Given(Created, StartRequested(), Dispatched()).When(new DispatchTask(Id, "proplet-1", At(3))).Then();

    [Fact]
    public void GivenRunningOnProplet_WhenDispatchTaskToOtherProplet_ThenConflict() =>
        Given(Created, StartRequested(), Dispatched()).When(new DispatchTask(Id, "proplet-2", At(3))).ThenRejected(RejectionKind.Conflict);

    [Fact]
    public void GivenPending_WhenDispatchTask_ThenConflict() =>
        Given(Created).When(new DispatchTask(Id, "proplet-1", At(3))).ThenRejected(RejectionKind.Conflict);

    [Fact]
    public void GivenRunning_WhenRecordResultWithoutError_ThenCompleted()
    {
        var state = Given(Created, StartRequested(), Dispatched())
            .When(new RecordResult(Id, "42", null, At(3)))
            .Then(new TaskCompleted(Id, 1, "42", At(3)));

        state.Status.ShouldBe(TaskStatus.Completed);
        state.Results.ShouldBe("42");
        state.FinishTime.ShouldBe(At(3));
    }

    [Fact]
    public void GivenRunning_WhenRecordResultWithError_ThenFailed()
    {
        var state = Given(Created, StartRequested(), Dispatched())
            .When(new RecordResult(Id, null, "trap: unreachable", At(3)))
            .Then(new TaskFailed(Id, 1, "trap: unreachable", At(3)));

        state.Status.ShouldBe(TaskStatus.Failed);
        state.Error.ShouldBe("trap: unreachable");
    }

    [Fact]
    public void GivenRunning_WhenRecordResultWithEmptyError_ThenCompleted() =>
        Given(Created, StartRequested(), Dispatched())
            .When(new RecordResult(Id, "1", "", At(3)))
            .Then(new TaskCompleted(Id, 1, "1", At(3)));

    [Fact]
    public void GivenCompleted_WhenRecordResultAgain_ThenResultIgnoredAndOutcomeKept()
    {
        var spec = Given(Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "42", At(3)))
            .When(new RecordResult(Id, "99", null, At(4)));

        var state = spec.Then(new TaskResultIgnored(Id, 1, "result for a task that is Completed", At(4)));

        state.Results.ShouldBe("42");
        state.Status.ShouldBe(TaskStatus.Completed);
    }

    [Fact]
    public void GivenRunningLatentTask_WhenRecordInvocation_ThenInvokedAndTheStateIsUnchanged()
    {
        var state = Given(Created, StartRequested(), Dispatched())
            .When(new RecordInvocation(Id, "inv-1", "proplet-1", "42", null, At(5)))
            .Then(new TaskInvoked(Id, "inv-1", "proplet-1", "42", null, At(5)));

        state.Status.ShouldBe(TaskStatus.Running);
        state.Results.ShouldBeNull();
    }

    [Fact]
    public void GivenNoTask_WhenRecordInvocation_ThenNotFound() =>
        Given().When(new RecordInvocation(Id, "inv-1", null, null, "timed out", At(5))).ThenRejected(RejectionKind.NotFound);

    [Fact]
    public void GivenPending_WhenRecordResult_ThenResultIgnored() =>
        Given(Created).When(new RecordResult(Id, "42", null, At(4))).Then(new TaskResultIgnored(Id, 0, "result for a task that is Pending", At(4)));

    /// <summary>
    /// A restart (stop, then start) dispatches attempt 2 to the same proplet before run 1's "stopped" result arrives: that
    /// late result names attempt 1 and is ignored, so attempt 2 keeps running and its own result completes it.
    /// </summary>
    [Fact]
    public void GivenARestartedTaskRunningOnTheSameProplet_WhenTheStoppedResultOfTheFirstAttemptArrives_ThenItIsIgnoredAndTheSecondAttemptsResultCompletesIt()
    {
        var restarted = Given(Created, StartRequested(), Dispatched(), new TaskStopped(Id, 1, "stopped by user", At(3)), StartRequested(2), Dispatched(2));

        var state = restarted
            .When(new RecordResult(Id, null, $"Task {Id.Value} was stopped before completion", At(4), "proplet-1", Attempt: 1))
            .Then(new TaskResultIgnored(Id, 2, "result of attempt 1; the task is on attempt 2", At(4)));

        state.Status.ShouldBe(TaskStatus.Running);
        Given(Created, StartRequested(), Dispatched(), new TaskStopped(Id, 1, "stopped by user", At(3)), StartRequested(2), Dispatched(2),
                new TaskResultIgnored(Id, 2, "result of attempt 1; the task is on attempt 2", At(4)))
            .When(new RecordResult(Id, "42", null, At(5), "proplet-1", Attempt: 2))
            .Then(new TaskCompleted(Id, 2, "42", At(5)));
    }

    /// <summary>A result without an attempt (the original proplet) applies to the current attempt, as before.</summary>
    [Fact]
    public void GivenARestartedTaskRunning_WhenAResultWithoutAnAttemptArrives_ThenItAppliesToTheCurrentAttempt() =>
        Given(Created, StartRequested(), Dispatched(), new TaskStopped(Id, 1, "stopped by user", At(3)), StartRequested(2), Dispatched(2))
            .When(new RecordResult(Id, null, "boom", At(4), "proplet-1"))
            .Then(new TaskFailed(Id, 2, "boom", At(4)));

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void GivenFinished_WhenStartTask_ThenNewAttemptAndPreviousOutcomeCleared(bool completed)
    {
        TaskEvent finished = completed ? new TaskCompleted(Id, 1, "42", At(3)) : new TaskFailed(Id, 1, "boom", At(3));

        var state = Given(Created, StartRequested(), Dispatched(), finished)
            .When(new StartTask(Id, At(10)))
            .Then(new TaskStartRequested(Id, 2, At(10)));

        state.Attempt.ShouldBe(2);
        state.Status.ShouldBe(TaskStatus.Scheduled);
        state.Results.ShouldBeNull();
        state.Error.ShouldBeNull();
        state.FinishTime.ShouldBeNull();
    }

    [Fact]
    public void GivenRunning_WhenRedispatchTask_ThenBackToScheduledWithTheReason_AndCounted()
    {
        var state = Given(Created, StartRequested(), Dispatched())
            .When(new RedispatchTask(Id, "proplet proplet-1 went offline", 2, At(5)))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-1", "proplet proplet-1 went offline", 1, At(5)));

        state.Status.ShouldBe(TaskStatus.Scheduled);
        state.PropletId.ShouldBeNull();
        state.Redispatches.ShouldBe(1);
        state.WaitReason.ShouldBe("proplet proplet-1 went offline");
    }

    /// <summary>
    /// A serving run (a daemon whose "started" result completed it) whose proplet went away: re-dispatched, the task no
    /// longer shows the lost run's results and finish time (its port on a proplet that is gone; a finish before the next
    /// run's start).
    /// </summary>
    [Fact]
    public void GivenAServingRun_WhenRedispatched_ThenTheLostRunsResultsAndFinishTimeAreGone()
    {
        var state = Given(Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "\"started at port 8080\"", At(3), true))
            .When(new RedispatchTask(Id, "proplet proplet-1 went offline", 2, At(5)))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-1", "proplet proplet-1 went offline", 1, At(5)));

        state.Status.ShouldBe(TaskStatus.Scheduled);
        (state.Results, state.FinishTime, state.ResultLeftRunning).ShouldBe((null, null, false));
    }

    [Fact]
    public void GivenRedispatchLimitReached_WhenRedispatchTask_ThenFailedSayingWhy() =>
        Given(Created, StartRequested(), Dispatched(), new TaskRedispatchRequested(Id, 1, "proplet-1", "gone", 1, At(5)), new TaskDispatched(Id, 1, "proplet-2", At(6)))
            .When(new RedispatchTask(Id, "proplet proplet-2 went offline", 1, At(7)))
            .Then(new TaskFailed(Id, 1, "proplet proplet-2 went offline; not re-dispatched (limit 1)", At(7)));

    /// <summary>
    /// A run that went on for the reset time before its proplet went away forgets the re-dispatches before it (as
    /// Kubernetes forgets a crash back-off): a daemon serving for months on proplets that now and then go away is not
    /// failed at the fourth loss. One lost soon after its dispatch still counts; the dispatch numbers still grow.
    /// </summary>
    [Fact]
    public void GivenALongRun_WhenItsPropletGoesAway_ThenTheRedispatchesBeforeNoLongerCount()
    {
        var reset = TimeSpan.FromMinutes(10);
        var twice = new TaskEvent[]
        {
            new TaskCreated(Id, Spec with { Daemon = true }, T0), StartRequested(), Dispatched(),
            new TaskRedispatchRequested(Id, 1, "proplet-1", "gone", 1, At(5)), new TaskDispatched(Id, 1, "proplet-2", At(6)),
            new TaskRedispatchRequested(Id, 1, "proplet-2", "gone", 2, At(7)), new TaskDispatched(Id, 1, "proplet-3", At(8)),
            new TaskCompleted(Id, 1, "\"\"", At(9), true),
        };

        // Lost within the reset time: the limit (2) is reached.
        Given(twice).When(new RedispatchTask(Id, "proplet proplet-3 went offline", 2, At(8).Add(reset).AddSeconds(-1), reset))
            .Then(new TaskFailed(Id, 1, "proplet proplet-3 went offline; not re-dispatched (limit 2)", At(8).Add(reset).AddSeconds(-1)));

        // Lost after it: re-dispatched, counted as the first; the dispatch number goes on (3).
        var later = At(8).Add(reset);
        var state = Given(twice).When(new RedispatchTask(Id, "proplet proplet-3 went offline", 2, later, reset))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-3", "proplet proplet-3 went offline", 3, later, Counted: 1));
        (state.Redispatches, state.RedispatchesCounted).ShouldBe((3, 1));

        // The next loss soon after counts again: one more is allowed, then it fails.
        var fourth = Given([.. twice, new TaskRedispatchRequested(Id, 1, "proplet-3", "gone", 3, later, Counted: 1), new TaskDispatched(Id, 1, "proplet-4", later.AddSeconds(1))])
            .When(new RedispatchTask(Id, "gone", 2, later.AddSeconds(2), reset))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-4", "gone", 4, later.AddSeconds(2), Counted: 2));
        Given([.. twice, new TaskRedispatchRequested(Id, 1, "proplet-3", "gone", 3, later, Counted: 1), new TaskDispatched(Id, 1, "proplet-4", later.AddSeconds(1)),
                new TaskRedispatchRequested(Id, 1, "proplet-4", "gone", 4, later.AddSeconds(2), Counted: 2), new TaskDispatched(Id, 1, "proplet-5", later.AddSeconds(3))])
            .When(new RedispatchTask(Id, "gone", 2, later.AddSeconds(4), reset))
            .Then(new TaskFailed(Id, 1, "gone; not re-dispatched (limit 2)", later.AddSeconds(4)));
        fourth.RedispatchesCounted.ShouldBe(2);

        // Zero counts every one; a start request (a new attempt) starts the count afresh.
        Given(twice).When(new RedispatchTask(Id, "gone", 2, later.AddDays(30))).Then(new TaskFailed(Id, 1, "gone; not re-dispatched (limit 2)", later.AddDays(30)));
        TaskEvent[] again = [.. twice, new TaskStopped(Id, 1, "stopped", At(10)), StartRequested(2)];
        again.Aggregate(TaskDecider.Initial, TaskDecider.Evolve).RedispatchesCounted.ShouldBe(0);

        // A serving task's resent start not taken, after the reset time: re-dispatched, counted as the first (the run went
        // on before its proplet restarted). A running task's start never taken ran nothing: it counts, however long ago.
        TaskEvent[] running = [.. twice[..^1]];
        Given([.. running, new TaskStartResent(Id, 1, "proplet-3", "x", later), new TaskStartResent(Id, 1, "proplet-3", "x", later.AddSeconds(10)), new TaskStartResent(Id, 1, "proplet-3", "x", later.AddSeconds(20))])
            .When(new ResendStart(Id, "proplet-3", 1, "x", 3, 2, TimeSpan.FromSeconds(5), later.AddSeconds(30), reset))
            .Then(new TaskFailed(Id, 1, "proplet proplet-3 did not take its start, sent 4 times; not re-dispatched (limit 2)", later.AddSeconds(30)));
        Given([.. twice, new TaskStartResent(Id, 1, "proplet-3", "x", later), new TaskStartResent(Id, 1, "proplet-3", "x", later.AddSeconds(10)), new TaskStartResent(Id, 1, "proplet-3", "x", later.AddSeconds(20))])
            .When(new ResendStart(Id, "proplet-3", 1, "x", 3, 2, TimeSpan.FromSeconds(5), later.AddSeconds(30), reset))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-3", "proplet proplet-3 did not take its start, sent 4 times", 3, later.AddSeconds(30), Counted: 1));
    }

    [Fact]
    public void GivenRunningOnTheProplet_WhenResendStartOfItsAttempt_ThenRecordedAndCounted()
    {
        var state = Given(Created, StartRequested(), Dispatched())
            .When(new ResendStart(Id, "proplet-1", 1, "proplet proplet-1 does not hold it", 3, 2, TimeSpan.FromSeconds(5), At(5)))
            .Then(new TaskStartResent(Id, 1, "proplet-1", "proplet proplet-1 does not hold it", At(5)));

        (state.Status, state.PropletId, state.StartResends).ShouldBe((TaskStatus.Running, "proplet-1", 1));
        var redispatched = new TaskEvent[] { Created, StartRequested(), Dispatched(), new TaskStartResent(Id, 1, "proplet-1", "x", At(5)), new TaskRedispatchRequested(Id, 1, "proplet-1", "gone", 1, At(6)), Dispatched() }
            .Aggregate(TaskDecider.Initial, TaskDecider.Evolve);
        redispatched.StartResends.ShouldBe(0);
    }

    [Fact]
    public void GivenTheStartSentAgainTheMostTimes_WhenResendStart_ThenReDispatchedOrFailedAtTheLimit()
    {
        TaskEvent Resent(int s) => new TaskStartResent(Id, 1, "proplet-1", "x", At(s));

        Given(Created, StartRequested(), Dispatched(), Resent(3), Resent(20), Resent(40))
            .When(new ResendStart(Id, "proplet-1", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(60)))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-1", "proplet proplet-1 did not take its start, sent 4 times", 1, At(60)));
        Given(Created, StartRequested(), Dispatched(), Resent(3))
            .When(new ResendStart(Id, "proplet-1", 1, "x", 1, 0, TimeSpan.FromSeconds(5), At(20)))
            .Then(new TaskFailed(Id, 1, "proplet proplet-1 did not take its start, sent 2 times; not re-dispatched (limit 0)", At(20)));
    }

    [Fact]
    public void GivenAStartSentAgainMomentsAgo_WhenResendStartAgain_ThenNothing_ForOneReportReachesEveryNode()
    {
        Given(Created, StartRequested(), Dispatched(), new TaskStartResent(Id, 1, "proplet-1", "x", At(5)))
            .When(new ResendStart(Id, "proplet-1", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(6))).Then();
        Given(Created, StartRequested(), Dispatched(), new TaskStartResent(Id, 1, "proplet-1", "x", At(5)))
            .When(new ResendStart(Id, "proplet-1", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(15)))
            .Then(new TaskStartResent(Id, 1, "proplet-1", "x", At(15)));
    }

    [Fact]
    public void GivenTheTaskMovedOn_WhenResendStart_ThenNothing()
    {
        Given(Created, StartRequested(), Dispatched()).When(new ResendStart(Id, "proplet-2", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(5))).Then();
        Given(Created, StartRequested(), Dispatched()).When(new ResendStart(Id, "proplet-1", 2, "x", 3, 2, TimeSpan.FromSeconds(5), At(5))).Then();
        Given(Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "1", At(3))).When(new ResendStart(Id, "proplet-1", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(5))).Then();
        Given(Created, StartRequested(), Dispatched(), new TaskRedispatchRequested(Id, 1, "proplet-1", "gone", 1, At(4)))
            .When(new ResendStart(Id, "proplet-1", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(5))).Then();
    }

    [Fact]
    public void GivenNotRunning_WhenRedispatchTask_ThenNothing() =>
        Given(Created, StartRequested()).When(new RedispatchTask(Id, "x", 3, At(7))).Then();

    [Fact]
    public void GivenRunningOnAnotherProplet_WhenRecordResultFromTheOldOne_ThenIgnored() =>
        Given(Created, StartRequested(), Dispatched())
            .When(new RecordResult(Id, "\"late\"", null, At(8), "proplet-0"))
            .Then(new TaskResultIgnored(Id, 1, "result from proplet proplet-0; the task runs on proplet-1", At(8)));

    /// <summary>A broadcast attempt runs on every proplet: the first result, from whichever proplet, ends it.</summary>
    [Fact]
    public void GivenABroadcastRunning_WhenRecordResultFromAnyProplet_ThenCompleted() =>
        Given(new TaskCreated(Id, Spec with { Broadcast = true }, T0), StartRequested(), new TaskDispatched(Id, 1, TaskSpec.BroadcastTarget, At(2)))
            .When(new RecordResult(Id, "\"7\"", null, At(8), "proplet-7"))
            .Then(new TaskCompleted(Id, 1, "\"7\"", At(8)));

    [Fact]
    public void GivenRunning_WhenStopTask_ThenStoppedAndInterrupted()
    {
        var state = Given(Created, StartRequested(), Dispatched())
            .When(new StopTask(Id, "stopped by user", At(5)))
            .Then(new TaskStopped(Id, 1, "stopped by user", At(5)));

        state.Status.ShouldBe(TaskStatus.Interrupted);
    }

    [Fact]
    public void GivenStopped_WhenStopTask_ThenNothing() =>
        Given(Created, StartRequested(), Dispatched(), new TaskStopped(Id, 1, "stopped by user", At(5)))
            .When(new StopTask(Id, "again", At(6))).Then();

    [Theory]
    [InlineData(TaskStatus.Pending)]
    [InlineData(TaskStatus.Completed)]
    public void GivenNotRunning_WhenStopTask_ThenConflict(TaskStatus status)
    {
        var history = status == TaskStatus.Pending
            ? new TaskEvent[] { Created }
            : [Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "42", At(3))];

        Given(history).When(new StopTask(Id, "x", At(6))).ThenRejected(RejectionKind.Conflict);
    }

    /// <summary>
    /// A result that leaves its run going (our proplet's "started" result of a daemon or a served HTTP proxy; any result
    /// of a daemon from the original proplet) completes the task as the original does, and the task can still be stopped
    /// (its proplet holds the run), not deleted before; another completed task cannot be stopped.
    /// </summary>
    [Fact]
    public void GivenACompletedResultThatLeftItsRunGoing_WhenStopTask_ThenStoppedAndNotDeletedBefore()
    {
        var serving = Given(Created, StartRequested(), Dispatched())
            .When(new RecordResult(Id, "\"started at port 8080\"", null, At(3), "proplet-1", 1, StillRunning: true))
            .Then(new TaskCompleted(Id, 1, "\"started at port 8080\"", At(3), true));
        (serving.Status, serving.IsServing).ShouldBe((TaskStatus.Completed, true));

        var completed = new TaskCompleted(Id, 1, "\"started at port 8080\"", At(3), true);
        Given(Created, StartRequested(), Dispatched(), completed).When(new DeleteTask(Id, At(4))).ThenRejected(RejectionKind.Conflict).Reason.ShouldContain("stop it before deleting it");
        var stopped = Given(Created, StartRequested(), Dispatched(), completed).When(new StopTask(Id, "stopped by user", At(5)))
            .Then(new TaskStopped(Id, 1, "stopped by user", At(5)));
        (stopped.Status, stopped.IsServing).ShouldBe((TaskStatus.Interrupted, false));

        var daemon = new TaskCreated(Id, Spec with { Daemon = true }, T0);
        Given(daemon, StartRequested(), Dispatched()).When(new RecordResult(Id, "\"\"", null, At(3), "proplet-1"))
            .Then(new TaskCompleted(Id, 1, "\"\"", At(3), true)).IsServing.ShouldBeTrue();
        Given(Created, StartRequested(), Dispatched()).When(new RecordResult(Id, "\"42\"", null, At(3), "proplet-1"))
            .Then(new TaskCompleted(Id, 1, "\"42\"", At(3))).IsServing.ShouldBeFalse();
    }

    /// <summary>
    /// A serving run that ends on its own (our proplet's result with "running": false, from its proplet): without an
    /// error the task stays Completed with what it produced, no longer serving (deleted without a stop); with one it
    /// fails. Not from another proplet, not another attempt's, and a "started" result again (the run started anew) is
    /// only recorded.
    /// </summary>
    [Fact]
    public void GivenServing_WhenItsRunEndsOnItsOwn_ThenNoLongerServing_CompletedOrFailed()
    {
        var serving = new TaskEvent[] { Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "\"started at port 8080\"", At(3), true) };

        var ended = Given(serving).When(new RecordResult(Id, "\"bye\"", null, At(9), "proplet-1", 1, RunEnded: true))
            .Then(new TaskServingEnded(Id, 1, "\"bye\"", At(9)));
        (ended.Status, ended.IsServing, ended.RunGoesOn, ended.Results, ended.FinishTime).ShouldBe((TaskStatus.Completed, false, false, "\"bye\"", At(9)));
        Given([.. serving, new TaskServingEnded(Id, 1, "\"bye\"", At(9))]).When(new DeleteTask(Id, At(10))).Then(new TaskDeleted(Id, At(10)));

        Given(serving).When(new RecordResult(Id, null, "exit status 3", At(9), "proplet-1", 1, RunEnded: true))
            .Then(new TaskFailed(Id, 1, "exit status 3", At(9))).Status.ShouldBe(TaskStatus.Failed);

        Given(serving).When(new RecordResult(Id, "\"bye\"", null, At(9), "proplet-2", 1, RunEnded: true))
            .Then(new TaskResultIgnored(Id, 1, "result for a task that is Completed", At(9))).IsServing.ShouldBeTrue();
        Given(serving).When(new RecordResult(Id, "\"bye\"", null, At(9), "proplet-1", 0, RunEnded: true))
            .Then(new TaskResultIgnored(Id, 1, "result of attempt 0; the task is on attempt 1", At(9))).IsServing.ShouldBeTrue();
        Given(serving).When(new RecordResult(Id, "\"started at port 8080\"", null, At(9), "proplet-1", 1, StillRunning: true))
            .Then(new TaskResultIgnored(Id, 1, "result for a task that is Completed", At(9))).IsServing.ShouldBeTrue();
    }

    /// <summary>A daemon whose "started" result was lost and whose end arrives first is completed, not serving.</summary>
    [Fact]
    public void GivenARunningDaemon_WhenTheEndOfItsRunArrivesFirst_ThenCompletedNotServing() =>
        Given(new TaskCreated(Id, Spec with { Daemon = true }, T0), StartRequested(), Dispatched())
            .When(new RecordResult(Id, "\"\"", null, At(9), "proplet-1", 1, RunEnded: true))
            .Then(new TaskCompleted(Id, 1, "\"\"", At(9))).IsServing.ShouldBeFalse();

    /// <summary>
    /// A serving task's run is the proplet's as a running one is: its start is sent again when the proplet does not hold
    /// it (it restarted), and it is re-dispatched when the proplet goes away. A completed task whose run ended is not.
    /// </summary>
    [Fact]
    public void GivenServing_WhenItsPropletLosesItOrGoesAway_ThenStartedAgainOrReDispatched()
    {
        var serving = new TaskEvent[] { Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "\"\"", At(3), true) };

        var resent = Given(serving).When(new ResendStart(Id, "proplet-1", 1, "proplet proplet-1 does not hold it", 3, 2, TimeSpan.FromSeconds(5), At(9)))
            .Then(new TaskStartResent(Id, 1, "proplet-1", "proplet proplet-1 does not hold it", At(9)));
        (resent.Status, resent.IsServing, resent.StartResends).ShouldBe((TaskStatus.Completed, true, 1));

        var redispatched = Given(serving).When(new RedispatchTask(Id, "proplet proplet-1 went offline", 2, At(9)))
            .Then(new TaskRedispatchRequested(Id, 1, "proplet-1", "proplet proplet-1 went offline", 1, At(9)));
        (redispatched.Status, redispatched.IsServing, redispatched.Redispatches).ShouldBe((TaskStatus.Scheduled, false, 1));
        Given(serving).When(new RedispatchTask(Id, "gone", 0, At(9))).Then(new TaskFailed(Id, 1, "gone; not re-dispatched (limit 0)", At(9)));

        // Its proplet started it anew ("started" again): the sends are forgiven, as many restarts as it takes.
        var resumed = Given([.. serving, new TaskStartResent(Id, 1, "proplet-1", "x", At(9))])
            .When(new RecordResult(Id, "\"\"", null, At(10), "proplet-1", 1, StillRunning: true))
            .Then(new TaskServingResumed(Id, 1, "proplet-1", At(10)));
        (resumed.IsServing, resumed.StartResends, resumed.StartResentAt).ShouldBe((true, 0, null));
        Given([.. serving, new TaskStartResent(Id, 1, "proplet-1", "x", At(9))])
            .When(new RecordResult(Id, "\"\"", null, At(10), "proplet-2", 1, StillRunning: true))
            .Then(new TaskResultIgnored(Id, 1, "result for a task that is Completed", At(10)));

        var completed = new TaskEvent[] { Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "42", At(3)) };
        Given(completed).When(new ResendStart(Id, "proplet-1", 1, "x", 3, 2, TimeSpan.FromSeconds(5), At(9))).Then();
        Given(completed).When(new RedispatchTask(Id, "gone", 2, At(9))).Then();
        Given([.. serving, new TaskServingEnded(Id, 1, "\"\"", At(5))]).When(new RedispatchTask(Id, "gone", 2, At(9))).Then();
    }

    [Fact]
    public void GivenPending_WhenSkipTask_ThenSkipped() =>
        Given(Created).When(new SkipTask(Id, "run_if failure not met", At(2))).Then(new TaskSkipped(Id, "run_if failure not met", At(2)))
            .Status.ShouldBe(TaskStatus.Skipped);

    [Fact]
    public void GivenSkipped_WhenSkipTask_ThenNothing() =>
        Given(Created, new TaskSkipped(Id, "r", At(2))).When(new SkipTask(Id, "r", At(3))).Then();

    [Fact]
    public void GivenRunning_WhenSkipTask_ThenConflict() =>
        Given(Created, StartRequested(), Dispatched()).When(new SkipTask(Id, "r", At(3))).ThenRejected(RejectionKind.Conflict);

    [Fact]
    public void GivenCreated_WhenUpdateTask_ThenUpdated()
    {
        var changed = Spec with { Name = "renamed", Priority = 70 };

        var state = Given(Created).When(new UpdateTask(Id, new TaskSpecPatch { Name = "renamed", Priority = 70 }, At(4))).Then(new TaskUpdated(Id, changed, At(4)));

        state.Spec.ShouldBe(changed);
        state.UpdatedAt.ShouldBe(At(4));
    }

    /// <summary>An update changes only what its patch sets, on the spec the task has when it is decided: one that set
    /// the priority in between is kept.</summary>
    [Fact]
    public void GivenAnotherUpdateInBetween_WhenAnUpdateOfAnotherFieldIsDecided_ThenBothChangesStand()
    {
        var prioritised = Spec with { Priority = 7 };
        var both = prioritised with { Name = "renamed" };

        Given(Created, new TaskUpdated(Id, prioritised, At(4))).When(new UpdateTask(Id, new TaskSpecPatch { Name = "renamed" }, At(5))).Then(new TaskUpdated(Id, both, At(5)));
    }

    [Fact]
    public void GivenAPatch_WhenApplied_ThenItSetsWhatItNames_ClearsWhatItSetsToNothing_AndKeepsTheRest()
    {
        var current = Spec with { Inputs = new(["1"]), File = "AAAA", Metadata = "{}", Schedule = "* * * * *", IsRecurring = true, Timezone = "Europe/Paris" };

        new TaskSpecPatch().ApplyTo(current).ShouldBe(current);
        new TaskSpecPatch { Name = "", Priority = 0 }.ApplyTo(current).ShouldBe(current);
        // Clearing the schedule clears is_recurring and keeps the timezone (spec §2.6), whatever the patch carries.
        new TaskSpecPatch { Inputs = EquatableArray<string>.Empty, SetsFile = true, SetsMetadata = true, SetsSchedule = true, IsRecurring = true, Timezone = "UTC" }.ApplyTo(current)
            .ShouldBe(current with { Inputs = EquatableArray<string>.Empty, File = null, Metadata = null, Schedule = null, IsRecurring = false });
        new TaskSpecPatch { SetsSchedule = true, Schedule = "0 * * * *", IsRecurring = false, Timezone = "UTC" }.ApplyTo(current)
            .ShouldBe(current with { Schedule = "0 * * * *", IsRecurring = false, Timezone = "UTC" });

        // The stored schedule sent again is no change (spec §2.6: applied when different): is_recurring and the
        // timezone stay as they are, whatever the patch carries.
        new TaskSpecPatch { SetsSchedule = true, Schedule = "* * * * *", IsRecurring = false, Timezone = "UTC" }.ApplyTo(current).ShouldBe(current);
    }

    [Fact]
    public void GivenCreated_WhenUpdateTaskWithSameSpec_ThenNothing() =>
        Given(Created).When(new UpdateTask(Id, new TaskSpecPatch { Name = Spec.Name }, At(4))).Then();

    [Fact]
    public void GivenCreated_WhenDeleteTask_ThenDeleted() =>
        Given(Created).When(new DeleteTask(Id, At(4))).Then(new TaskDeleted(Id, At(4))).Deleted.ShouldBeTrue();

    /// <summary>A deleted task's view keeps no module (it was kept for ever with the document); its events still hold it.</summary>
    [Fact]
    public void GivenATaskWithAModule_WhenDeleted_ThenItsStateHoldsNoModule()
    {
        var state = Given(new TaskCreated(Id, Spec with { File = "AGFzbQEAAAA=" }, T0)).When(new DeleteTask(Id, At(4))).Then(new TaskDeleted(Id, At(4)));

        state.Spec.ShouldNotBeNull().File.ShouldBeNull();
        state.Spec.Name.ShouldBe(Spec.Name);
    }

    [Fact]
    public void GivenDeleted_WhenDeleteTask_ThenNothing() =>
        Given(Created, new TaskDeleted(Id, At(4))).When(new DeleteTask(Id, At(5))).Then();

    [Fact]
    public void GivenDeleted_WhenStartTask_ThenNotFound() =>
        Given(Created, new TaskDeleted(Id, At(4))).When(new StartTask(Id, At(5))).ThenRejected(RejectionKind.NotFound);

    [Fact]
    public void GivenDeleted_WhenCreateTask_ThenConflict() =>
        Given(Created, new TaskDeleted(Id, At(4))).When(new CreateTask(Id, Spec, At(5))).ThenRejected(RejectionKind.Conflict);

    [Fact]
    public void GivenRunning_WhenDeleteTask_ThenConflict() =>
        Given(Created, StartRequested(), Dispatched()).When(new DeleteTask(Id, At(4))).ThenRejected(RejectionKind.Conflict);

    [Fact]
    public void GivenNothing_WhenDeleteTask_ThenNotFound() =>
        Given().When(new DeleteTask(Id, At(4))).ThenRejected(RejectionKind.NotFound);

    [Fact]
    public void EveryCommandOnEveryState_DecideIsTotal()
    {
        TaskEvent[][] histories =
        [
            [],
            [Created],
            [Created, StartRequested()],
            [Created, StartRequested(), Dispatched()],
            [Created, StartRequested(), Dispatched(), new TaskCompleted(Id, 1, "1", At(3))],
            [Created, StartRequested(), Dispatched(), new TaskFailed(Id, 1, "e", At(3))],
            [Created, StartRequested(), Dispatched(), new TaskStopped(Id, 1, "s", At(3))],
            [Created, new TaskSkipped(Id, "r", At(3))],
            [Created, new TaskDeleted(Id, At(3))],
        ];
        TaskCommand[] commands =
        [
            new CreateTask(Id, Spec, At(9)), new UpdateTask(Id, new TaskSpecPatch { Name = "n" }, At(9)), new StartTask(Id, At(9)),
            new DispatchTask(Id, "p", At(9)), new DeferDispatch(Id, "waiting", At(9)), new RedispatchTask(Id, "gone", 1, At(9)), new RecordResult(Id, "r", null, At(9)), new StopTask(Id, "s", At(9)),
            new ResendStart(Id, "proplet-1", 1, "lost", 3, 1, TimeSpan.FromSeconds(5), At(9)),
            new SkipTask(Id, "k", At(9)), new DeleteTask(Id, At(9)),
        ];

        foreach (var history in histories)
        {
            var state = history.Aggregate(TaskDecider.Initial, TaskDecider.Evolve);
            foreach (var command in commands)
            {
                var decision = TaskDecider.Decide(command, state);
                (decision.IsRejected ^ decision.Rejection is null).ShouldBeTrue();
                if (decision.IsRejected)
                {
                    decision.Events.ShouldBeEmpty();
                }

                // Applying the decision and deciding again must be a repeat: idempotent or rejected, never new state changes,
                // except results, which are recorded as ignored, starts of finished tasks (new attempts), and starts sent
                // again (each sending is recorded; the state does not change).
                var after = decision.Events.Aggregate(state, TaskDecider.Evolve);
                var again = TaskDecider.Decide(command, after);
                if (!decision.IsRejected && command is not RecordResult and not ResendStart)
                {
                    again.Events.ShouldBeEmpty($"{command.GetType().Name} after {string.Join(",", history.Select(e => e.GetType().Name))}");
                }
            }
        }
    }
}
