using Propeller.Infrastructure.MartenStore;

namespace Propeller.Infrastructure.Tests.EventStore;

/// <summary>The grouping rules of group commit, with a fake commit (no database).</summary>
public sealed class AppendGroupCommitterTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WhileAGroupCommits_TheNextAppendsQueue_AndGoTogether_OnePerStream()
    {
        var gate = new TaskCompletionSource();
        var groups = new List<string[]>();
        var committer = new AppendGroupCommitter<string, string>(
            item => item.Split('#')[0],
            async group =>
            {
                lock (groups)
                {
                    groups.Add([.. group]);
                }

                if (group.Contains("s0#1"))
                {
                    await gate.Task;
                }

                return [.. group.Select(i => "ok " + i)];
            },
            maxConcurrentGroups: 1,
            maxGroupSize: 3);

        var first = committer.CommitAsync("s0#1", Ct);
        await WaitUntilAsync(() => groups.Count == 1);
        string[] queued = ["s1#1", "s2#1", "s1#2", "s3#1", "s4#1"];
        var rest = queued.Select(i => committer.CommitAsync(i, Ct)).ToArray();
        gate.SetResult();

        (await first).ShouldBe("ok s0#1");
        (await Task.WhenAll(rest)).ShouldBe(queued.Select(i => "ok " + i).ToArray());
        groups[0].ShouldBe(["s0#1"]);
        groups[1].ShouldBe(["s1#1", "s2#1", "s3#1"]); // s1#2 waits: one append per stream and group; at most 3
        groups[2].ShouldBe(["s1#2", "s4#1"]);
        committer.Grouped.ShouldBe(5);
    }

    [Fact]
    public async Task AFailedGroup_IsCommittedAgainOneByOne_SoOnlyTheFailingAppendFails()
    {
        var gate = new TaskCompletionSource();
        var calls = 0;
        var committer = new AppendGroupCommitter<string, string>(
            item => item,
            async group =>
            {
                Interlocked.Increment(ref calls);
                if (group.Contains("blocker"))
                {
                    await gate.Task;
                }

                if (group.Contains("bad"))
                {
                    throw new InvalidOperationException("conflict in " + string.Join(",", group));
                }

                return [.. group];
            },
            maxConcurrentGroups: 1,
            maxGroupSize: 64);

        var blocker = committer.CommitAsync("blocker", Ct);
        await WaitUntilAsync(() => Volatile.Read(ref calls) == 1);
        var good1 = committer.CommitAsync("good1", Ct);
        var bad = committer.CommitAsync("bad", Ct);
        var good2 = committer.CommitAsync("good2", Ct);
        gate.SetResult();

        (await blocker).ShouldBe("blocker");
        (await good1).ShouldBe("good1");
        (await good2).ShouldBe("good2");
        (await Should.ThrowAsync<InvalidOperationException>(() => bad)).Message.ShouldBe("conflict in bad");
        calls.ShouldBe(5); // blocker, the failed group of three, then each of the three alone
    }

    [Fact]
    public async Task AnAppendCancelledWhileWaiting_IsNotCommitted()
    {
        var gate = new TaskCompletionSource();
        var committed = new List<string>();
        var committer = new AppendGroupCommitter<string, string>(
            item => item,
            async group =>
            {
                lock (committed)
                {
                    committed.AddRange(group);
                }

                if (group.Contains("blocker"))
                {
                    await gate.Task;
                }

                return [.. group];
            },
            maxConcurrentGroups: 1,
            maxGroupSize: 64);

        var blocker = committer.CommitAsync("blocker", Ct);
        await WaitUntilAsync(() => committed.Count == 1);
        using var cancel = new CancellationTokenSource();
        var cancelled = committer.CommitAsync("cancelled", cancel.Token);
        var kept = committer.CommitAsync("kept", Ct);
        await cancel.CancelAsync();
        gate.SetResult();

        await blocker;
        (await kept).ShouldBe("kept");
        await Should.ThrowAsync<OperationCanceledException>(() => cancelled);
        committed.ShouldBe(["blocker", "kept"]);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline);
            await Task.Delay(5, Ct);
        }
    }
}
