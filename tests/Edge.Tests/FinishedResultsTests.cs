using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class FinishedResultsTests
{
    private static byte[] Bytes(int length) => new byte[length];

    /// <summary>A result is found for its task and attempt only, and the latest one published for a task replaces the one before.</summary>
    [Fact]
    public void GivenResultsOfTwoAttempts_WhenFound_ThenOnlyTheLatestAttemptsIs()
    {
        var results = new FinishedResults(new FakeClock());
        results.Record("t", 1, "one"u8.ToArray());
        results.Record("t", 2, "two"u8.ToArray());

        results.Find("t", 1).ShouldBeNull();
        results.Find("t", 2).ShouldBe("two"u8.ToArray());
        results.Find("other", 2).ShouldBeNull();
        results.Count.ShouldBe(1);
    }

    /// <summary>A result is forgotten once its retention has passed.</summary>
    [Fact]
    public void GivenAResult_WhenTheRetentionHasPassed_ThenItIsForgotten()
    {
        var clock = new FakeClock();
        var results = new FinishedResults(clock, retention: TimeSpan.FromMinutes(15));
        results.Record("t", 1, Bytes(10));

        clock.Advance(TimeSpan.FromMinutes(14));
        results.Find("t", 1).ShouldNotBeNull();
        clock.Advance(TimeSpan.FromMinutes(1));
        results.Find("t", 1).ShouldBeNull();
    }

    /// <summary>Beyond the count or the bytes kept, the oldest results go first; a result larger than the largest kept is
    /// not kept, and forgets the task's earlier one.</summary>
    [Fact]
    public void GivenFullMemory_WhenAnotherResultIsRecorded_ThenTheOldestIsForgotten()
    {
        var byCount = new FinishedResults(new FakeClock(), capacity: 2);
        byCount.Record("a", 1, Bytes(1));
        byCount.Record("b", 1, Bytes(1));
        byCount.Record("c", 1, Bytes(1));
        (byCount.Find("a", 1), byCount.Find("b", 1), byCount.Find("c", 1)).ShouldSatisfyAllConditions(
            x => x.Item1.ShouldBeNull(), x => x.Item2.ShouldNotBeNull(), x => x.Item3.ShouldNotBeNull());

        var byBytes = new FinishedResults(new FakeClock(), bytes: 250, largestKept: 200);
        byBytes.Record("a", 1, Bytes(100));
        byBytes.Record("b", 1, Bytes(100));
        byBytes.Find("a", 1).ShouldNotBeNull(); // 202 bytes with the ids; the third goes past 250
        byBytes.Record("c", 1, Bytes(100));
        byBytes.Find("a", 1).ShouldBeNull();
        byBytes.Count.ShouldBe(2);

        byBytes.Record("c", 1, Bytes(201));
        byBytes.Find("c", 1).ShouldBeNull();
        byBytes.Count.ShouldBe(1);
    }
}
