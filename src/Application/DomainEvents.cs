using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;

namespace Propeller.Application;

/// <summary>Every aggregate's event aliases in one registry (hosts and tests start from this).</summary>
public static class DomainEvents
{
    public static EventTypeRegistry CreateRegistry() =>
        PropletAggregate.RegisterEvents(TaskAggregate.RegisterEvents(new EventTypeRegistry()));
}
