using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class AttemptMemoryTests
{
    /// <summary>A stop covers its attempt and the earlier ones, not a later one; a lower stop after a higher one
    /// does not lower what is covered.</summary>
    [Fact]
    public void GivenAStopOfAttemptTwo_WhenStartsAreChecked_ThenAttemptsUpToTwoAreCovered()
    {
        var stopped = new AttemptMemory(new FakeClock());

        stopped.Record("t", 2);
        stopped.Record("t", 1);

        stopped.Covers("t", 1).ShouldBeTrue();
        stopped.Covers("t", 2).ShouldBeTrue();
        stopped.Covers("t", 3).ShouldBeFalse();
        stopped.Covers("other", 1).ShouldBeFalse();
    }

    /// <summary>A stop is forgotten once its retention has passed.</summary>
    [Fact]
    public void GivenAStop_WhenTheRetentionHasPassed_ThenItIsForgotten()
    {
        var clock = new FakeClock();
        var stopped = new AttemptMemory(clock, retention: TimeSpan.FromMinutes(15));
        stopped.Record("t", 1);

        clock.Advance(TimeSpan.FromMinutes(14));
        stopped.Covers("t", 1).ShouldBeTrue();
        clock.Advance(TimeSpan.FromMinutes(1));
        stopped.Covers("t", 1).ShouldBeFalse();
    }

    /// <summary>Beyond its capacity, the ids stopped longest ago are forgotten first.</summary>
    [Fact]
    public void GivenAFullMemory_WhenAnotherIdIsStopped_ThenTheOldestIsForgotten()
    {
        var clock = new FakeClock();
        var stopped = new AttemptMemory(clock, capacity: 3);
        foreach (var id in new[] { "a", "b", "c", "d" })
        {
            stopped.Record(id, 1);
            clock.Advance(TimeSpan.FromSeconds(1));
        }

        stopped.Covers("a", 1).ShouldBeFalse();
        new[] { "b", "c", "d" }.ShouldAllBe(id => stopped.Covers(id, 1));
    }

    /// <summary>Beyond its characters, the ids stopped longest ago are forgotten first: an id is whatever a stop names, and
    /// 4096 unknown ids of 1 MiB each were kept.</summary>
    [Fact]
    public void GivenStopsOfHugeIds_WhenRecorded_ThenTheOldestAreForgottenToKeepTheCharacters()
    {
        var clock = new FakeClock();
        var stopped = new AttemptMemory(clock);
        for (var i = 0; i < 8; i++)
        {
            stopped.Record(new string((char)('a' + i), 300_000), 1);
            clock.Advance(TimeSpan.FromSeconds(1));
        }

        stopped.Record("t", 1);

        // 3 × 300,000 + 1 characters fit in 1 Mi: t, h, g and f are kept
        stopped.Covers("t", 1).ShouldBeTrue();
        "fgh".ShouldAllBe(c => stopped.Covers(new string(c, 300_000), 1));
        "abcde".ShouldAllBe(c => !stopped.Covers(new string(c, 300_000), 1));
    }
}
