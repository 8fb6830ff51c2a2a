using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>An engine of its own with epochs: its ticker interrupts a running guest, and disposing it stops the ticker.</summary>
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
            WasmEngine.Watch(store, () =>
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
    public void GivenEnginesWithEpochs_WhenDisposed_ThenTheirTickerThreadsHaveEnded()
    {
        _ = WasmEngine.Shared; // made once per process, maybe by a test running beside this one: made before counting
        var before = Tickers();
        var engines = Enumerable.Range(0, 3).Select(_ => new WasmEngine(fuel: false, epochs: true)).ToList();
        Tickers().ShouldBe(before + 3);

        engines.ForEach(e => e.Dispose());

        Tickers().ShouldBe(before); // joined in Dispose
    }

    /// <summary>Threads of this process named as the engine names its ticker (Linux: /proc/self/task/*/comm).</summary>
    private static int Tickers() => Directory.GetDirectories("/proc/self/task").Count(t => Name(t) == "wasm epoch");

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
