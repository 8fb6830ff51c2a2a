using Propeller.Domain.Common;
using Propeller.Domain.Proplets;
using static Propeller.Domain.Proplets.PropletCommand;
using static Propeller.Domain.Proplets.PropletEvent;

namespace Propeller.Domain.Tests.Proplets;

public sealed class PropletDeciderTests
{
    private static readonly PropletId Id = new("6f1c0d2e-0000-4000-8000-000000000001");
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);
    private static readonly PropletMetadata Meta = new() { Hostname = "h1", Tags = new EquatableArray<string>(["gpu"]), TotalMemoryBytes = 16_777_216_000 };

    private static Decision<PropletEvent> Decide(PropletCommand command, params PropletEvent[] given) =>
        PropletDecider.Decide(command, given.Aggregate(PropletDecider.Initial, PropletDecider.Evolve));

    private static PropletRegistered Registered => new(Id, "Connolly-Bateman", Meta, T0);

    [Fact]
    public void GivenNothing_WhenRegister_ThenRegisteredWithTheGivenName() =>
        Decide(new RegisterProplet(Id, "Connolly-Bateman", Meta, T0)).Events.ShouldBe([Registered]);

    /// <summary>The broadcast marker is where a broadcast task's dispatch names its proplet: no proplet may take it.</summary>
    [Fact]
    public void GivenNothing_WhenRegisterAsTheBroadcastMarker_ThenRejectedAsInvalid()
    {
        var broadcast = new PropletId(Domain.Tasks.TaskSpec.BroadcastTarget);

        var decision = Decide(new RegisterProplet(broadcast, "x", Meta, T0));

        decision.Events.ShouldBeEmpty();
        decision.Rejection!.Kind.ShouldBe(RejectionKind.Invalid);
    }

    [Fact]
    public void GivenRegistered_WhenRegisterWithSameMetadata_ThenNothing_AndTheNameIsKept() =>
        Decide(new RegisterProplet(Id, "Other-Name", Meta with { }, T0.AddSeconds(1)), Registered).Events.ShouldBeEmpty();

    [Fact]
    public void GivenRegistered_WhenRegisterWithNewMetadata_ThenMetadataChanged()
    {
        var changed = Meta with { Ip = "10.0.0.9" };

        Decide(new RegisterProplet(Id, "x", changed, T0.AddSeconds(1)), Registered).Events.ShouldBe([new PropletMetadataChanged(Id, changed, T0.AddSeconds(1))]);
    }

    [Fact]
    public void GivenOffline_WhenRegister_ThenCameOnline() =>
        Decide(new RegisterProplet(Id, "x", Meta, T0.AddSeconds(9)), Registered, new PropletWentOffline(Id, "last will", T0.AddSeconds(5)))
            .Events.ShouldBe([new PropletCameOnline(Id, T0.AddSeconds(9))]);

    [Fact]
    public void WhenItComesBack_ItIsOfflineSinceNoMore_ButWhenItLastWentOfflineIsKept()
    {
        var state = new PropletEvent[] { Registered, new PropletWentOffline(Id, "last will", T0.AddSeconds(5)), new PropletCameOnline(Id, T0.AddSeconds(9)) }
            .Aggregate(PropletDecider.Initial, PropletDecider.Evolve);

        (state.Offline, state.OfflineSince, state.LastWentOffline).ShouldBe((false, null, T0.AddSeconds(5)));
    }

    [Fact]
    public void GivenOnline_WhenMarkOffline_ThenWentOffline_AndRepeatIsNothing()
    {
        var offline = new PropletWentOffline(Id, "last will", T0.AddSeconds(5));

        Decide(new MarkPropletOffline(Id, "last will", T0.AddSeconds(5)), Registered).Events.ShouldBe([offline]);
        Decide(new MarkPropletOffline(Id, "heartbeats stopped", T0.AddSeconds(6)), Registered, offline).Events.ShouldBeEmpty();
        Decide(new MarkPropletOnline(Id, T0.AddSeconds(7)), Registered, offline).Events.ShouldBe([new PropletCameOnline(Id, T0.AddSeconds(7))]);
        Decide(new MarkPropletOnline(Id, T0.AddSeconds(7)), Registered).Events.ShouldBeEmpty();
    }

    [Fact]
    public void GivenRunningTasks_WhenDelete_ThenConflictNamingTheCount() =>
        Decide(new DeleteProplet(Id, 2, T0), Registered).Rejection!.Reason.ShouldBe($"proplet {Id} has 2 active tasks");

    [Fact]
    public void GivenIdle_WhenDelete_ThenDeleted_AndRepeatIsNothing()
    {
        Decide(new DeleteProplet(Id, 0, T0), Registered).Events.ShouldBe([new PropletDeleted(Id, T0)]);
        Decide(new DeleteProplet(Id, 0, T0), Registered, new PropletDeleted(Id, T0)).Events.ShouldBeEmpty();
    }

    [Fact]
    public void GivenDeleted_WhenRegister_ThenRegisteredAgain() =>
        Decide(new RegisterProplet(Id, "New-Name", Meta, T0.AddMinutes(1)), Registered, new PropletDeleted(Id, T0))
            .Events.ShouldBe([new PropletRegistered(Id, "New-Name", Meta, T0.AddMinutes(1))]);

    [Fact]
    public void GivenUnknown_WhenMarkOfflineOrDelete_ThenNotFound()
    {
        Decide(new MarkPropletOffline(Id, "x", T0)).Rejection!.Kind.ShouldBe(RejectionKind.NotFound);
        Decide(new DeleteProplet(Id, 0, T0)).Rejection!.Kind.ShouldBe(RejectionKind.NotFound);
    }
}
