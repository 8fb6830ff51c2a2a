namespace Propeller.Wasm.Tests;

/// <summary>Store limits (issue 5): fuel, epoch interruption, memory and table caps, call depth. Each is a typed trap.</summary>
public sealed class LimitsTests
{
    private const string Spin = """
        (module
          (func (export "spin") (loop $l (br $l)))
          (func (export "one") (result i32) (i32.const 1))
          (func $down (export "down") (param i32) (result i32)
            (if (result i32) (i32.eqz (local.get 0))
              (then (i32.const 0))
              (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1))))))))
        """;

    [Fact]
    public void GivenFuel_WhenAGuestSpinsForever_ThenItTrapsOutOfFuelAndRunsAgainAfterTheHostAddsFuel()
    {
        using var engine = new Engine(new Config().WithConsumeFuel(true));
        var (store, instance) = Wat.Instantiate(engine, Spin);
        using (store)
        {
            store.SetFuel(100_000);
            var trap = Should.Throw<TrapException>(() => instance.GetFunction("spin")!.Call());
            trap.Code.ShouldBe(TrapCode.OutOfFuel);
            trap.Text.ShouldBe("all fuel consumed by WebAssembly");
            store.GetFuel().ShouldBe(0);

            Should.Throw<TrapException>(() => instance.GetFunction<int>("one")!()).Code.ShouldBe(TrapCode.OutOfFuel);
            store.AddFuel(1_000);
            instance.GetFunction<int>("one")!().ShouldBe(1);
            instance.GetFunction<int, int>("down")!(10).ShouldBe(10);
        }
    }

    [Fact]
    public void GivenFuel_WhenAFunctionRuns_ThenItIsChargedOnePerOperatorPlusOnePerCall()
    {
        using var engine = new Engine(new Config().WithConsumeFuel(true));
        var (store, instance) = Wat.Instantiate(engine, Spin);
        using (store)
        {
            store.SetFuel(1_000);
            instance.GetFunction<int>("one")!();

            // Entry (1) + i32.const (1).
            store.GetFuel().ShouldBe(998);
            instance.GetFunction<int, int>("down")!(3);

            // Per level: entry 1, local.get + i32.eqz + if 3, else arm 5 up to the call, i32.add 1; the base case 1 + 3 + 1.
            store.GetFuel().ShouldBe(998 - ((3 * 10) + 5));
        }
    }

    [Fact]
    public void GivenEpochInterruption_WhenAnotherThreadInterruptsATightLoop_ThenTheGuestTrapsAndTheStoreIsReusable()
    {
        using var engine = new Engine(new Config().WithEpochInterruption(true));
        var (store, instance) = Wat.Instantiate(engine, Spin);
        using (store)
        {
            using var timer = new Timer(_ => store.Interrupt(), null, TimeSpan.FromMilliseconds(100), Timeout.InfiniteTimeSpan);
            var trap = Should.Throw<TrapException>(() => instance.GetFunction("spin")!.Call());
            trap.Code.ShouldBe(TrapCode.Interrupt);
            trap.Text.ShouldBe("interrupt");

            store.SetEpochDeadline(long.MaxValue);
            instance.GetFunction<int, int>("down")!(100).ShouldBe(100);
        }
    }

    [Fact]
    public void GivenAnEpochDeadline_WhenTheEngineEpochReachesIt_ThenTheGuestTraps()
    {
        using var engine = new Engine(new Config().WithEpochInterruption(true));
        var (store, instance) = Wat.Instantiate(engine, Spin);
        using (store)
        {
            store.SetEpochDeadline(3);
            using var ticker = new Timer(_ => engine.IncrementEpoch(), null, TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(20));
            Should.Throw<TrapException>(() => instance.GetFunction("spin")!.Call()).Code.ShouldBe(TrapCode.Interrupt);
        }
    }

    [Fact]
    public void GivenAMemoryLimit_WhenAModuleAsksForMoreAtInstantiation_ThenInstantiationTrapsWithResourceLimitExceeded()
    {
        using var engine = new Engine();
        using var store = new Store(engine);
        store.SetLimits(new StoreLimits { MemorySize = 4 * Memory.PageSize });
        var module = Module.FromBytes(engine, "big", Wat.ToWasm("(module (memory 5))"));
        var trap = Should.Throw<TrapException>(() => new Linker(engine).Instantiate(store, module));
        trap.Code.ShouldBe(TrapCode.ResourceLimitExceeded);
        trap.Message.ShouldContain("exceeds memory limits");
    }

    [Fact]
    public void GivenAMemoryLimit_WhenTheGuestGrowsPastIt_ThenMemoryGrowReturnsMinusOneOrTrapsWhenConfigured()
    {
        const string grow = """
            (module (memory (export "memory") 1)
              (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
            """;
        using var engine = new Engine();
        using var store = new Store(engine);
        store.SetLimits(new StoreLimits { MemorySize = 4 * Memory.PageSize });
        var instance = new Linker(engine).Instantiate(store, Module.FromBytes(engine, "grow", Wat.ToWasm(grow)));
        var growFn = instance.GetFunction<int, int>("grow")!;
        growFn(2).ShouldBe(1);
        growFn(2).ShouldBe(-1);
        growFn(1).ShouldBe(3);
        instance.GetMemory("memory")!.Pages.ShouldBe(4);

        using var strict = new Store(engine);
        strict.SetLimits(new StoreLimits { MemorySize = 2 * Memory.PageSize, TrapOnGrowFailure = true });
        var strictGrow = new Linker(engine).Instantiate(strict, Module.FromBytes(engine, "grow", Wat.ToWasm(grow))).GetFunction<int, int>("grow")!;
        Should.Throw<TrapException>(() => strictGrow(5)).Code.ShouldBe(TrapCode.ResourceLimitExceeded);
        strictGrow(1).ShouldBe(1);
    }

    [Fact]
    public void GivenATableLimit_WhenTheTableIsCreatedOrGrownPastIt_ThenItIsRefused()
    {
        using var engine = new Engine();
        using var store = new Store(engine);
        store.SetLimits(new StoreLimits { TableElements = 10 });
        var big = Module.FromBytes(engine, "t", Wat.ToWasm("(module (table 11 funcref))"));
        Should.Throw<TrapException>(() => new Linker(engine).Instantiate(store, big)).Code.ShouldBe(TrapCode.ResourceLimitExceeded);
        var small = Module.FromBytes(engine, "t2", Wat.ToWasm(
            "(module (table $t 2 funcref) (func (export \"grow\") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))"));
        var grow = new Linker(engine).Instantiate(store, small).GetFunction<int, int>("grow")!;
        grow(8).ShouldBe(2);
        grow(1).ShouldBe(-1);
    }

    [Fact]
    public void GivenAMaximumCallDepth_WhenTheGuestRecursesPastIt_ThenItTrapsWithStackOverflowAndTheEngineKeepsWorking()
    {
        using var engine = new Engine();
        var (store, instance) = Wat.Instantiate(engine, Spin);
        using (store)
        {
            store.SetMaxCallDepth(500);
            var down = instance.GetFunction<int, int>("down")!;
            down(400).ShouldBe(400);
            Should.Throw<TrapException>(() => down(1_000)).Code.ShouldBe(TrapCode.StackOverflow);
            down(10).ShouldBe(10);
        }

        var (other, again) = Wat.Instantiate(engine, Spin);
        using (other)
        {
            again.GetFunction<int, int>("down")!(5_000).ShouldBe(5_000);
        }
    }
}
