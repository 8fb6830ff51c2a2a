namespace Propeller.Broker.Tests;

/// <summary><see cref="KeyedOrder"/>: one key's work in order, different keys side by side, keys forgotten once idle.</summary>
public sealed class KeyedOrderTests
{
    [Fact]
    public async Task GivenWorkOfOneKey_WhenTheFirstIsStillRunning_ThenTheNextWaitsForIt()
    {
        var order = new KeyedOrder();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ran = new List<int>();
        var first = order.RunAsync("a", async () =>
        {
            await gate.Task;
            lock (ran)
            {
                ran.Add(1);
            }
        });
        var second = order.RunAsync("a", () =>
        {
            lock (ran)
            {
                ran.Add(2);
            }

            return Task.CompletedTask;
        });

        await Task.Delay(50, TestContext.Current.CancellationToken);
        second.IsCompleted.ShouldBeFalse("the second started before the first ended");
        gate.SetResult();
        await Task.WhenAll(first, second);
        ran.ShouldBe([1, 2]);
    }

    [Fact]
    public async Task GivenWorkOfTwoKeys_WhenTheFirstKeysWorkIsStillRunning_ThenTheOtherKeysRunsAtOnce()
    {
        var order = new KeyedOrder();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var blocked = order.RunAsync("a", () => gate.Task);

        await order.RunAsync("b", () => Task.CompletedTask).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        blocked.IsCompleted.ShouldBeFalse();
        gate.SetResult();
        await blocked;
    }

    [Fact]
    public async Task GivenAWorkThatFails_WhenTheNextOfItsKeyRuns_ThenItRunsAnyway_AndTheFailureStaysWithTheFirst()
    {
        var order = new KeyedOrder();
        var failed = order.RunAsync("a", async () =>
        {
            await Task.Yield();
            throw new InvalidOperationException("boom");
        });
        var cancelled = order.RunAsync("a", () => Task.FromCanceled(new CancellationToken(canceled: true)));
        var ran = false;
        await order.RunAsync("a", () =>
        {
            ran = true;
            return Task.CompletedTask;
        });

        ran.ShouldBeTrue();
        await Should.ThrowAsync<InvalidOperationException>(failed);
        await Should.ThrowAsync<TaskCanceledException>(cancelled);
    }

    [Fact]
    public async Task GivenManyKeys_WhenTheirWorkHasEnded_ThenNoKeyIsKept()
    {
        var order = new KeyedOrder();
        var all = new List<Task>();
        for (var i = 0; i < 1000; i++)
        {
            var key = (i % 300).ToString(System.Globalization.CultureInfo.InvariantCulture);
            all.Add(order.RunAsync(key, async () => await Task.Yield()));
            all.Add(order.RunAsync(key, () => Task.CompletedTask));
        }

        await Task.WhenAll(all);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (order.Count > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        order.Count.ShouldBe(0, "a key whose work has ended is forgotten (the manager sees one per task)");
    }

    [Fact]
    public async Task GivenWorkThatGaveUpWaitingForTheOneBeforeIt_WhenTheNextOfItsKeyRuns_ThenItStillWaitsForTheEarlierOne()
    {
        var order = new KeyedOrder();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = order.RunAsync("a", () => gate.Task);
        var gaveUp = order.RunAsync("a", _ => Task.FromException(new TimeoutException("waited too long")));
        var third = order.RunAsync("a", () => Task.CompletedTask);

        await Should.ThrowAsync<TimeoutException>(gaveUp);
        await Task.Delay(50, TestContext.Current.CancellationToken);
        third.IsCompleted.ShouldBeFalse("the third overtook the first, still running");
        gate.SetResult();
        await Task.WhenAll(first, third).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
    }

    /// <summary>Work for several keys (a batch of results) waits for the earlier work of any of them, and later work of
    /// any of them waits for it; work of other keys runs at once; the keys are forgotten once idle.</summary>
    [Fact]
    public async Task GivenWorkOfSeveralKeys_ThenItRunsAfterTheEarlierWorkOfEach_AndBeforeTheLaterWorkOfAny()
    {
        var ct = TestContext.Current.CancellationToken;
        var order = new KeyedOrder();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ran = new List<string>();
        void Ran(string name)
        {
            lock (ran)
            {
                ran.Add(name);
            }
        }

        var first = order.RunAsync(["a"], async () =>
        {
            await gate.Task;
            Ran("a");
        });
        var batch = order.RunAsync(["b", "a"], () =>
        {
            Ran("b+a");
            return Task.CompletedTask;
        });
        var later = order.RunAsync(["b"], () =>
        {
            Ran("b");
            return Task.CompletedTask;
        });
        await order.RunAsync(["c"], () => Task.CompletedTask).WaitAsync(TimeSpan.FromSeconds(10), ct);

        await Task.Delay(50, ct);
        (batch.IsCompleted, later.IsCompleted).ShouldBe((false, false));
        gate.SetResult();
        await Task.WhenAll(first, batch, later).WaitAsync(TimeSpan.FromSeconds(10), ct);
        ran.ShouldBe(["a", "b+a", "b"]);
        order.Count.ShouldBe(0);
    }
}
