using Propeller.WasmHost;

namespace Propeller.Edge.Tests;

/// <summary>The pooled guest threads run every call handed to them, on 8 MiB-stack threads, reused across calls.</summary>
public sealed class GuestThreadsTests
{
    [Fact]
    public async Task GivenCallsOneAfterAnother_WhenRun_ThenEachCompletesWithItsResultOnAReusedGuestThread()
    {
        var threads = new HashSet<int>();
        for (var i = 0; i < 200; i++)
        {
            var n = i;
            var (result, thread, name) = await GuestThreads.RunAsync(() => (n * 2, Environment.CurrentManagedThreadId, Thread.CurrentThread.Name));
            result.ShouldBe(n * 2);
            name.ShouldBe("wasm guest");
            threads.Add(thread);
        }

        // One call at a time needs one idle worker, woken again for each call (other tests may add a few of their own).
        threads.Count.ShouldBeLessThan(20);
    }

    [Fact]
    public async Task GivenManyCallsAtOnce_WhenRun_ThenEveryOneCompletesAndExceptionsReachTheirCaller()
    {
        var calls = Enumerable.Range(0, 64).Select(i => GuestThreads.RunAsync(() =>
        {
            Thread.Sleep(i % 4);
            return i % 7 == 0 ? throw new InvalidOperationException("call " + i) : i;
        })).ToList();

        for (var i = 0; i < calls.Count; i++)
        {
            if (i % 7 == 0)
            {
                (await Should.ThrowAsync<InvalidOperationException>(calls[i])).Message.ShouldBe("call " + i);
            }
            else
            {
                (await calls[i]).ShouldBe(i);
            }
        }
    }
}
