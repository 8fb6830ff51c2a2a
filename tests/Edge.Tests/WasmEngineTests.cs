using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>
/// An engine of its own with epochs: its ticker interrupts a running guest, ticks only while a lease is held (and a
/// little after), and disposing the engine stops it.
/// </summary>
[Collection("wasm engines alone")] // counts the process's ticker threads: no engine made beside it by other tests
public sealed class WasmEngineTests
{
    [Fact]
    public void GivenAnEngineWithEpochs_WhenAWatchedGuestLoops_ThenItsCheckEndsTheGuest_AndTheEngineDisposesTwice()
    {
        var engine = new WasmEngine(fuel: false, epochs: true);
        using (var module = Module.FromBytes(engine.Engine, "spin", Modules.Spin))
        using (var store = new Store(engine.Engine))
        using (var linker = new Linker(engine.Engine))
        {
            var checks = 0;
            using var ticking = engine.Watch(store, () =>
            {
                if (++checks == 3)
                {
                    throw new TimeoutException("stopped by the test");
                }
            });
            var main = linker.Instantiate(store, module).GetAction("main")!;

            var error = Should.Throw<WasmtimeException>(() => main());

            error.InnerException.ShouldBeOfType<TimeoutException>();
            checks.ShouldBe(3); // one check a tick: the ticker advanced the epoch three times
        }

        engine.Dispose();
        engine.Dispose();
    }

    [Fact]
    public void GivenAnEngineWithEpochs_WhenNoLeaseIsHeld_ThenItDoesNotTick_AndALeaseStartsIt_UntilReleased()
    {
        using var engine = new WasmEngine(fuel: false, epochs: true);
        Thread.Sleep(WasmEngine.EpochTick * 10);
        engine.Ticks.ShouldBe(0); // never leased: the ticker thread has not woken

        using (engine.KeepTicking())
        {
            WaitUntil(() => engine.Ticks >= 3);
        }

        engine.Leases.ShouldBe(0);
        var stopped = WaitUntilSteady(engine);
        Thread.Sleep(WasmEngine.EpochTick * 10);
        engine.Ticks.ShouldBe(stopped); // idle again: no tick
    }

    [Fact]
    public void GivenTwoLeases_WhenOneIsDisposedTwice_ThenTheOtherStillHoldsTheTicker()
    {
        using var engine = new WasmEngine(fuel: false, epochs: true);
        var first = engine.KeepTicking();
        using var second = engine.KeepTicking();

        first.Dispose();
        first.Dispose();

        engine.Leases.ShouldBe(1);
        var before = engine.Ticks;
        WaitUntil(() => engine.Ticks >= before + WasmEngine.LingerTicks + 3); // past the linger: still ticking
    }

    [Fact]
    public void GivenAStoreWhoseWatchLeaseWasReleased_WhenItsGuestRunsUnderKeepTicking_ThenTheCheckStillEndsIt()
    {
        using var engine = new WasmEngine(fuel: false, epochs: true);
        using var module = Module.FromBytes(engine.Engine, "spin", Modules.Spin);
        using var store = new Store(engine.Engine);
        using var linker = new Linker(engine.Engine);
        var checks = 0;
        Action main;
        using (engine.Watch(store, () =>
        {
            if (++checks == 3)
            {
                throw new TimeoutException("stopped by the test");
            }
        }))
        {
            main = linker.Instantiate(store, module).GetAction("main")!;
        }

        WaitUntilSteady(engine); // the ticker blocked: as between two plugin calls

        using (engine.KeepTicking())
        {
            Should.Throw<WasmtimeException>(() => main()).InnerException.ShouldBeOfType<TimeoutException>();
        }
    }

    [Fact]
    public async Task GivenLeasesTakenAndReleasedOnOtherThreads_WhenAGuestRunsUnderItsOwnLease_ThenItsCheckAlwaysRuns()
    {
        using var engine = new WasmEngine(fuel: false, epochs: true);
        using var module = Module.FromBytes(engine.Engine, "spin", Modules.Spin);
        using var linker = new Linker(engine.Engine);
        using var stop = new CancellationTokenSource();
        var churn = Enumerable.Range(0, 3).Select(_ => Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                engine.KeepTicking().Dispose(); // the count crossing zero, over and over
            }
        }, CancellationToken.None)).ToList();

        for (var round = 0; round < 20; round++)
        {
            var guest = Task.Run(() =>
            {
                using var store = new Store(engine.Engine);
                var checks = 0;
                using var ticking = engine.Watch(store, () =>
                {
                    if (++checks == 2)
                    {
                        throw new TimeoutException("stopped by the test");
                    }
                });
                var main = linker.Instantiate(store, module).GetAction("main")!;
                Should.Throw<WasmtimeException>(() => main());
            }, CancellationToken.None);
            if (await Task.WhenAny(guest, Task.Delay(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken)) != guest)
            {
                using (engine.KeepTicking())
                {
                    await guest; // a held lease lets the stranded guest end before the test fails
                }

                Assert.Fail($"round {round}: the guest ran with its lease held and the ticker stopped");
            }

            await guest;
        }

        await stop.CancelAsync();
        await Task.WhenAll(churn);
        engine.Leases.ShouldBe(0);
    }

    [Fact]
    public void GivenAnEngineWithoutEpochs_WhenLeased_ThenTheLeaseDoesNothing()
    {
        using var engine = new WasmEngine(fuel: false, epochs: false);
        using (engine.KeepTicking())
        {
            engine.Leases.ShouldBe(0);
        }

        engine.Ticks.ShouldBe(0);
    }

    [Fact]
    public void GivenEnginesWithEpochs_WhenDisposed_ThenTheirTickerThreadsHaveEnded()
    {
        _ = WasmEngine.Shared; // made once per process: made before counting
        var before = Tickers();
        var engines = Enumerable.Range(0, 3).Select(_ => new WasmEngine(fuel: false, epochs: true)).ToList();
        var theirs = Tickers().Except(before).ToList();
        theirs.Count.ShouldBe(3); // one ticker thread each (by thread id: an earlier engine's may still be listed)

        engines.ForEach(e => e.Dispose());

        // Joined in Dispose; the kernel may list an ended thread under /proc/self/task a moment longer.
        WaitUntil(() => !Tickers().Overlaps(theirs));
    }

    private static void WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "the condition did not hold within 10 s");
            Thread.Sleep(5);
        }
    }

    /// <summary>Waits until the ticker has stopped (no tick over two linger periods) and returns its count.</summary>
    private static long WaitUntilSteady(WasmEngine engine)
    {
        var last = -1L;
        WaitUntil(() =>
        {
            var now = engine.Ticks;
            var steady = now == last;
            last = now;
            if (!steady)
            {
                Thread.Sleep(WasmEngine.EpochTick * WasmEngine.LingerTicks * 2);
            }

            return steady;
        });
        return last;
    }

    /// <summary>Ids of this process's threads named as the engine names its ticker (Linux: /proc/self/task/*/comm).</summary>
    private static HashSet<string> Tickers() =>
        [.. Directory.GetDirectories("/proc/self/task").Where(t => Name(t) == "wasm epoch").Select(Path.GetFileName).OfType<string>()];

    /// <summary>A thread's name; null when it ended after the listing (other tests' pool threads come and go).</summary>
    private static string? Name(string task)
    {
        try
        {
            return File.ReadAllText(Path.Combine(task, "comm")).Trim();
        }
        catch (IOException)
        {
            return null;
        }
    }
}
