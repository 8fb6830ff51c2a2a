using Propeller.Application.Proplets;

namespace Propeller.Application.Tests.Proplets;

public sealed class HeartbeatWitnessTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset LongAgo = Now.AddMinutes(-10);

    [Fact]
    public void GivenAPropletNeverHeardFrom_ThenItHasNoLastSign() =>
        Listening(Now.AddHours(-1)).LastSign(null, Now, TimeSpan.Zero).ShouldBeNull();

    [Fact]
    public void GivenANodeThatNeverConnected_ThenEveryPropletMayBeAliveNow() =>
        new HeartbeatWitness().LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(Now);

    [Fact]
    public void GivenANodeListeningForLong_ThenTheRecordedHeartbeatIsTheLastSign() =>
        Listening(Now.AddHours(-1)).LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(LongAgo);

    [Fact]
    public void GivenANodeThatReconnected_ThenTheLastSignIsNoEarlierThanTheReconnect()
    {
        var reconnected = Now.AddSeconds(-5);
        Listening(reconnected).LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(reconnected);
    }

    [Fact]
    public void GivenAReconnectAllowance_ThenTheWindowStartsOnlyAfterIt()
    {
        var reconnected = Now.AddSeconds(-5);
        Listening(reconnected).LastSign(LongAgo, Now, TimeSpan.FromSeconds(60)).ShouldBe(reconnected.AddSeconds(60));
    }

    [Fact]
    public void GivenANodeWhoseConnectionIsDown_ThenEveryPropletMayBeAliveNow()
    {
        var witness = new HeartbeatWitness();
        witness.ListeningFrom(Now.AddHours(-1), () => false);
        witness.LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(Now);
    }

    [Fact]
    public void GivenStoringFails_ThenEveryPropletMayBeAliveNow_AndOnceItWorksAgainFromThen()
    {
        var witness = Listening(Now.AddHours(-1));
        witness.StoringFailed();
        witness.LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(Now);

        var recovered = Now.AddSeconds(2);
        witness.Stored(new FixedTime(recovered));
        witness.LastSign(LongAgo, Now.AddSeconds(3), TimeSpan.Zero).ShouldBe(recovered);
        witness.LastSign(Now.AddSeconds(2.5), Now.AddSeconds(3), TimeSpan.Zero).ShouldBe(Now.AddSeconds(2.5));
    }

    [Fact]
    public void GivenStoringWorks_ThenAStoreMovesNothing()
    {
        var witness = Listening(Now.AddHours(-1));
        witness.Stored(new FixedTime(Now));
        witness.LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(LongAgo);
    }

    [Fact]
    public void GivenAMessageUnhandledForSeconds_ThenTheLastSignMovesOnByThatLong_AtMostToNow()
    {
        var unhandled = TimeSpan.FromSeconds(4);
        var witness = new HeartbeatWitness();
        witness.ListeningFrom(Now.AddHours(-1), () => true, () => unhandled);
        witness.LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(LongAgo.AddSeconds(4));
        witness.LastSign(Now.AddSeconds(-1), Now, TimeSpan.Zero).ShouldBe(Now);

        unhandled = TimeSpan.Zero;
        witness.LastSign(LongAgo, Now, TimeSpan.Zero).ShouldBe(LongAgo);
    }

    /// <summary>
    /// A liveness check while a store marks storing as working again (here from the clock's read, between the steps)
    /// still sees the outage: storing's failure was cleared before its end was written, and a check in that gap judged
    /// proplets from their heartbeats before the outage, marking them offline.
    /// </summary>
    [Fact]
    public void GivenStoringFailed_WhenAStoreEndsItWhileALivenessCheckRuns_ThenTheCheckSeesTheOutageOrItsEnd()
    {
        var witness = Listening(Now.AddHours(-1));
        witness.StoringFailed();
        var recovered = Now.AddSeconds(2);
        DateTimeOffset? during = null;

        witness.Stored(new ReadWith(recovered, () => during = witness.LastSign(LongAgo, recovered, TimeSpan.Zero)));

        during.ShouldBe(recovered);
        witness.LastSign(LongAgo, Now.AddSeconds(3), TimeSpan.Zero).ShouldBe(recovered);
    }

    /// <summary>A clock that runs <paramref name="onRead"/> as it is read.</summary>
    private sealed class ReadWith(DateTimeOffset now, Action onRead) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow()
        {
            onRead();
            return now;
        }
    }

    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    private static HeartbeatWitness Listening(DateTimeOffset since)
    {
        var witness = new HeartbeatWitness();
        witness.ListeningFrom(since, () => true);
        return witness;
    }
}
