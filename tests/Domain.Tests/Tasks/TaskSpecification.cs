using Propeller.Domain.Common;
using Propeller.Domain.Tasks;

namespace Propeller.Domain.Tests.Tasks;

/// <summary>Given(events).When(command).Then(events | rejection) over the task decider.</summary>
internal sealed class TaskSpecification
{
    private readonly TaskEvent[] _given;
    private TaskCommand? _when;

    private TaskSpecification(TaskEvent[] given) => _given = given;

    public static TaskSpecification Given(params TaskEvent[] events) => new(events);

    public TaskSpecification When(TaskCommand command)
    {
        _when = command;
        return this;
    }

    public TaskState State => _given.Aggregate(TaskDecider.Initial, TaskDecider.Evolve);

    public TaskState Then(params TaskEvent[] expected)
    {
        var decision = TaskDecider.Decide(_when!, State);
        decision.Rejection.ShouldBeNull();
        decision.Events.ShouldBe(expected);
        return decision.Events.Aggregate(State, TaskDecider.Evolve);
    }

    public Rejection ThenRejected(RejectionKind kind)
    {
        var decision = TaskDecider.Decide(_when!, State);
        decision.Rejection.ShouldNotBeNull();
        decision.Rejection.Kind.ShouldBe(kind);
        decision.Events.ShouldBeEmpty();
        return decision.Rejection;
    }
}
