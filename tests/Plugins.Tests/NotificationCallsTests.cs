using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Tests;

/// <summary>The background notification calls: the running count comes back down, so the limit is never used up.</summary>
public sealed class NotificationCallsTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// Many instant calls from several threads: a call whose removal ran before it was registered stayed counted for ever,
    /// each such leak lowering the limit until every notification was dropped. Afterwards nothing is left running and the
    /// whole limit is free.
    /// </summary>
    [Fact]
    public async Task ManyInstantNotifications_AllFinish_AndTheLimitIsNotUsedUp()
    {
        // The leak needs a call to end between its start and its registration: rare, so the race is run several times.
        const int limit = 4;
        for (var round = 0; round < 30; round++)
        {
            var calls = new NotificationCalls(limit);
            await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(
                () =>
                {
                    for (var i = 0; i < 250_000; i++)
                    {
                        calls.TryStart("p", () => Task.CompletedTask);
                    }
                },
                Ct)));

            for (var waited = 0; calls.Count > 0 && waited < 100; waited++)
            {
                await Task.Delay(100, Ct); // a call's removal runs just after it ends
            }

            calls.Count.ShouldBe(0, $"round {round}");

            // The whole limit is free again: as many calls as it allows run at once.
            var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Enumerable.Range(0, limit).Select(_ => calls.TryStart("p", () => release.Task)).ShouldAllBe(started => started);
            calls.TryStart("p", () => Task.CompletedTask).ShouldBeFalse();
            release.SetResult();
        }
    }

    [Fact]
    public async Task AfterThousandsOfCalls_ANewOneIsStillAccepted()
    {
        var calls = new NotificationCalls(1024);
        for (var round = 0; round < 5; round++)
        {
            for (var i = 0; i < 1024; i++)
            {
                calls.TryStart("p", () => Task.CompletedTask);
            }

            for (var waited = 0; calls.Count > 0 && waited < 300; waited++)
            {
                await Task.Delay(100, Ct);
            }

            calls.Count.ShouldBe(0);
        }

        calls.TryStart("p", () => Task.CompletedTask).ShouldBeTrue();
    }

    /// <summary>
    /// The pending limit is per plugin: plugin A's notifications hang (held by a gate) and fill A's limit of 8, while every
    /// one of plugin B's 50 is accepted and runs. Before, the limit was shared: A's eight filled it and B's were dropped.
    /// </summary>
    [Fact]
    public async Task GivenOnePluginsNotificationsHanging_WhenAnotherPluginIsNotified_ThenNoneOfItsAreDropped()
    {
        const int limit = 8;
        var calls = new NotificationCalls(limit);
        var hang = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var seen = 0;
        var startedA = 0;
        var startedB = 0;
        for (var i = 0; i < 50; i++)
        {
            if (calls.TryStart("a", () => hang.Task))
            {
                startedA++;
            }

            using var ran = new SemaphoreSlim(0);
            if (calls.TryStart("b", () =>
                {
                    Interlocked.Increment(ref seen);
                    ran.Release();
                    return Task.CompletedTask;
                }))
            {
                startedB++;
                await ran.WaitAsync(Ct); // B's call has run: at most one of B's is pending at a time
            }
        }

        startedA.ShouldBe(limit);
        calls.PendingOf("a").ShouldBe(limit);
        hang.SetResult();
        (await calls.DrainAsync(TimeSpan.FromMinutes(1), Ct)).ShouldBeTrue();
        startedB.ShouldBe(50);
        Volatile.Read(ref seen).ShouldBe(50);
    }

    /// <summary>
    /// The host's stop token ends the drain as its timeout does: false, no exception. Before, only the timeout was caught
    /// and the cancellation (which usually fires first at shutdown) left the host's StopAsync with nothing logged.
    /// </summary>
    [Fact]
    public async Task GivenANotificationHanging_WhenTheDrainIsCancelled_ThenItReturnsFalseWithoutThrowing()
    {
        var calls = new NotificationCalls(4);
        var hang = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        calls.TryStart("a", () => hang.Task).ShouldBeTrue();
        using var stopping = new CancellationTokenSource();
        await stopping.CancelAsync();

        (await calls.DrainAsync(TimeSpan.FromMinutes(10), stopping.Token)).ShouldBeFalse();

        calls.Count.ShouldBe(1);
        hang.SetResult();
    }
}
