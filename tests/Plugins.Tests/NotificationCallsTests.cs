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
                        calls.TryStart(() => Task.CompletedTask);
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
            Enumerable.Range(0, limit).Select(_ => calls.TryStart(() => release.Task)).ShouldAllBe(started => started);
            calls.TryStart(() => Task.CompletedTask).ShouldBeFalse();
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
                calls.TryStart(() => Task.CompletedTask);
            }

            for (var waited = 0; calls.Count > 0 && waited < 300; waited++)
            {
                await Task.Delay(100, Ct);
            }

            calls.Count.ShouldBe(0);
        }

        calls.TryStart(() => Task.CompletedTask).ShouldBeTrue();
    }
}
