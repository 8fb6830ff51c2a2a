using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Tests.Shared;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>The pooling allocator of the shared engine (ADR 0011): its limits, and the errors when a guest hits them.</summary>
public sealed class WasmPoolTests
{
    [Fact]
    public void GivenNoSetting_WhenLoaded_ThenThePoolCoversTwiceTheTaskSlotsAndAtLeastWasmtimesDefault()
    {
        Load(("PROPLET_MAX_CONCURRENT_TASKS", "4")).WasmPoolInstances.ShouldBe(WasmPool.DefaultInstances);
        Load(("PROPLET_MAX_CONCURRENT_TASKS", "5000")).WasmPoolInstances.ShouldBe(10_000);
        Load(("PROPLET_WASM_POOL_INSTANCES", "0")).WasmPoolInstances.ShouldBe(0);
        Should.Throw<ConfigurationException>(() => Load(("PROPLET_WASM_POOL_INSTANCES", "-1")));
        Should.Throw<ConfigurationException>(() => Load(("PROPLET_WASM_POOL_INSTANCES", "many")));
    }

    [Fact]
    public void GivenSettings_WhenThePoolIsChosen_ThenSlotsHoldTheLargestDefaultCapAndZeroMeansNoPool()
    {
        InProcessRuntime.SharedPool(TestSettings.Create() with { WasmPoolInstances = 0 }).ShouldBeNull();

        var uncapped = InProcessRuntime.SharedPool(TestSettings.Create() with { WasmPoolInstances = 7 }).ShouldNotBeNull();
        uncapped.Instances.ShouldBe(7);
        uncapped.MaxMemoryBytes.ShouldBe(WasmPool.Wasm32Bytes);
        uncapped.Clamp(1024).ShouldBe(1024);
        uncapped.Clamp(1 << 19).ShouldBe(4096);

        // A 16 MiB task cap still leaves room for the plugins' 64 MiB.
        var small = InProcessRuntime.SharedPool(TestSettings.Create() with { WasmPoolInstances = 7, TaskMaxMemoryMib = 16 }).ShouldNotBeNull();
        small.MaxMemoryBytes.ShouldBe((64L << 20) + MemoryLimits.Margin);
        var large = InProcessRuntime.SharedPool(TestSettings.Create() with { WasmPoolInstances = 7, TaskMaxMemoryMib = 512 }).ShouldNotBeNull();
        large.MaxMemoryBytes.ShouldBe((512L << 20) + MemoryLimits.Margin);
        large.Clamp(100).ShouldBe(100);
        large.Clamp(4096).ShouldBe(513);
        large.Clamp(null).ShouldBeNull();
    }

    [Fact]
    public void GivenTheTestProcess_WhenTheSharedEngineIsUsed_ThenItIsPooledAndSaysWhatItReserved()
    {
        using var runtime = new InProcessRuntime(TestSettings.Create(), Microsoft.Extensions.Logging.Abstractions.NullLogger<InProcessRuntime>.Instance);
        var engine = WasmEngine.Shared;
        engine.Pool.ShouldNotBeNull(WasmEngine.PoolFailure);
        engine.Allocator.ShouldContain("GiB of address space reserved");
        engine.ReservedBytes.ShouldBeGreaterThan(0);
    }

    [Fact]
    public void GivenAFullPool_WhenAnotherInstanceIsMade_ThenTheErrorSaysSoAndAFreedSlotIsReused()
    {
        using var engine = new WasmEngine(fuel: true, epochs: false, new WasmPool { Instances = 2 });
        using var module = Module.FromBytes(engine.Engine, "grow", Modules.Grow);
        using var linker = new Linker(engine.Engine);
        var held = new List<Store> { new(engine.Engine), new(engine.Engine) };
        try
        {
            foreach (var store in held)
            {
                store.Fuel = 1000;
                linker.Instantiate(store, module);
            }

            using var third = new Store(engine.Engine);
            var error = Should.Throw<WasmtimeException>(() => linker.Instantiate(third, module));
            WasmErrors.Reason(error).ShouldStartWith("no free WebAssembly instance slot in the pooling allocator (");
            WasmErrors.Reason(error).ShouldContain("PROPLET_WASM_POOL_INSTANCES");

            held[0].Dispose();
            held.RemoveAt(0);
            using var again = new Store(engine.Engine);
            again.Fuel = 1000;
            linker.Instantiate(again, module).GetFunction<int>("main")!().ShouldBe(1);
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public void GivenSmallSlots_WhenAMemoryGrowsPastOrStartsBeyondIt_ThenGrowthIsRefusedAndInstantiationFailsClearly()
    {
        using var engine = new WasmEngine(fuel: false, epochs: false, new WasmPool { Instances = 4, MaxMemoryBytes = 2 << 20 });
        using var linker = new Linker(engine.Engine);

        // 1 page + 100 pages is past 2 MiB (32 pages): memory.grow answers -1, as at a store limit.
        using (var store = new Store(engine.Engine))
        using (var grow = Module.FromBytes(engine.Engine, "grow", Modules.Grow))
        {
            linker.Instantiate(store, grow).GetFunction<int>("main")!().ShouldBe(-1);
        }

        // Wasmtime checks the pool's limits when it compiles: such a module is refused with a text that names the pool.
        var error = Should.Throw<WasmtimeException>(() => Module.FromBytes(engine.Engine, "big", Wat.ToWasm("""(module (memory 64))""")));
        WasmErrors.Reason(error).ShouldContain("exceeds the limit of 0x200000 bytes");
        WasmErrors.Reason(error).ShouldContain("PROPLET_WASM_POOL_INSTANCES=0");
    }

    [Fact]
    public void GivenALargeTable_WhenInstantiated_ThenTheDefaultPoolHoldsMoreThanWasmtimesDefaultOf20000()
    {
        using var engine = new WasmEngine(fuel: false, epochs: false, new WasmPool { Instances = 2 });
        using var linker = new Linker(engine.Engine);
        using var store = new Store(engine.Engine);
        using var table = Module.FromBytes(engine.Engine, "table", Wat.ToWasm("""(module (table 50000 funcref))"""));
        linker.Instantiate(store, table);

        var error = Should.Throw<WasmtimeException>(() => Module.FromBytes(engine.Engine, "huge", Wat.ToWasm("""(module (table 200000 funcref))""")));
        WasmErrors.Reason(error).ShouldContain("minimum element size of 200000 which exceeds the limit of 100000");
    }

    private static PropletSettings Load(params (string Key, string Value)[] values)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PROPLET_TENANT_ID"] = "t1",
            ["PROPLET_CHANNEL_ID"] = "c1",
            ["PROPLET_ENTITY_ID"] = "p1",
            ["PROPLET_API_KEY"] = "k1",
        };
        foreach (var (key, value) in values)
        {
            env[key] = value;
        }

        return PropletSettingsLoader.Load(key => env.GetValueOrDefault(key));
    }
}
