namespace Propeller.Wasm.Tests;

public sealed class StoreTests : IDisposable
{
    private const string Fib = """
        (module (func $fib (export "fib") (param i32) (result i32)
          (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
            (then (local.get 0))
            (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2))))))))
        """;

    private readonly Engine _engine = new();

    public void Dispose() => _engine.Dispose();

    [Fact]
    public async Task GivenTwoStores_WhenCalledFromParallelThreads_ThenEachGetsItsOwnCorrectResults()
    {
        var bytes = Wat.ToWasm(Fib);
        var tasks = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            using var store = new Store(_engine);
            var fib = new Instance(store, Module.FromBytes(_engine, "fib", bytes)).GetFunction<int, int>("fib")!;
            return Enumerable.Range(0, 20).Sum(i => fib(i));
        }, TestContext.Current.CancellationToken));
        var sums = await Task.WhenAll(tasks);
        sums.ShouldAllBe(s => s == 10945);
    }

    [Fact]
    public void GivenHostFunction_WhenItCallsBackIntoTheCallingInstance_ThenTheCallRunsInline()
    {
        var linker = new Linker(_engine);
        Instance? seenBefore = null;
        linker.DefineFunction("env", "callback", (Caller caller, int n) =>
        {
            seenBefore = caller.Instance;
            var result = (int)caller.GetFunction("square")!.Invoke(n)! + 1;
            caller.Instance.ShouldBeSameAs(seenBefore);
            return result;
        });
        var (store, instance) = Wat.Instantiate(_engine, """
            (module
              (import "env" "callback" (func $cb (param i32) (result i32)))
              (func (export "square") (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
              (func (export "run") (param i32) (result i32) (call $cb (local.get 0))))
            """, linker);
        using var _ = store;
        instance.GetFunction("run")!.Invoke(9).ShouldBe(82);
        seenBefore.ShouldBeSameAs(instance);
    }

    [Fact]
    public void GivenStoresOneAfterAnother_WhenCalled_ThenTheyReuseAPooledGuestThread_NotTheCallersThread()
    {
        // A stack size no other test uses: its own pool, so tests running in parallel do not take its worker.
        using var engine = new Engine(new Config().WithGuestStackSize((48 << 20) + 4096));
        var threads = new List<int>();
        var linker = new Linker(engine);
        linker.DefineFunction("env", "where", () => threads.Add(Environment.CurrentManagedThreadId));
        const string Module = """(module (import "env" "where" (func $where)) (func (export "run") (call $where)))""";
        for (var i = 0; i < 3; i++)
        {
            var (store, instance) = Wat.Instantiate(engine, Module, linker);
            using var _ = store;
            instance.GetFunction("run")!.Call();
        }

        threads.Count.ShouldBe(3);
        threads.ShouldAllBe(t => t == threads[0]);
        threads[0].ShouldNotBe(Environment.CurrentManagedThreadId);
    }

    [Fact]
    public void GivenAStoreThatExhaustedTheStack_WhenTheNextStoreRunsOnThePooledThread_ThenItHasItsFullDepth()
    {
        var (first, runaway) = Wat.Instantiate(_engine, TrapTests.Recursion);
        using (first)
        {
            Should.Throw<TrapException>(() => runaway.GetFunction("forever")!.Call()).Code.ShouldBe(TrapCode.StackOverflow);
        }

        var (second, instance) = Wat.Instantiate(_engine, TrapTests.Recursion);
        using var _ = second;
        instance.GetFunction("down")!.Invoke(4_000).ShouldBe(4_000);
    }

    [Fact]
    public async Task GivenRunAsync_WhenTheWorkReturnsOrTraps_ThenTheTaskCarriesTheResultOrTheTrap()
    {
        var (store, instance) = Wat.Instantiate(_engine, Fib);
        using var _ = store;
        var fib = instance.GetFunction<int, int>("fib")!;

        (await store.RunAsync(() => fib(20))).ShouldBe(6765);

        var (trapping, bad) = Wat.Instantiate(_engine, """(module (func (export "boom") unreachable))""");
        using (trapping)
        {
            var trap = await Should.ThrowAsync<TrapException>(() => trapping.RunAsync(() => bad.GetFunction("boom")!.Call()));
            trap.Code.ShouldBe(TrapCode.Unreachable);
        }

        // The store is still usable, from RunAsync and from a plain call.
        (await store.RunAsync(() => fib(10))).ShouldBe(55);
        fib(11).ShouldBe(89);
    }

    [Fact]
    public void GivenDisposedStore_WhenCalling_ThenObjectDisposedException()
    {
        var (store, instance) = Wat.Instantiate(_engine, Fib);
        var fib = instance.GetFunction("fib")!;
        fib.Invoke(10).ShouldBe(55);
        store.Dispose();
        Should.Throw<ObjectDisposedException>(() => fib.Invoke(10));
    }

    [Fact]
    public void GivenExplicitImports_WhenInstantiatingWithoutLinker_ThenTheyBindInOrder()
    {
        using var store = new Store(_engine);
        var module = Module.FromBytes(_engine, "m", Wat.ToWasm("""
            (module
              (import "env" "g" (global $g i64))
              (import "env" "f" (func $f (param i64) (result i64)))
              (func (export "run") (result i64) (call $f (global.get $g))))
            """));
        module.Imports.Select(i => i.Kind).ShouldBe([ExternKind.Global, ExternKind.Function]);
        module.Exports.Single().Name.ShouldBe("run");
        var global = new Global(store, ValueKind.I64, false, Value.I64(20));
        Should.Throw<WasmException>(() => global.SetValue(Value.I64(1)));
        var instance = new Instance(store, module, global, Function.FromDelegate((long x) => x + 1));
        instance.GetFunction("run")!.Invoke().ShouldBe(21L);
        Should.Throw<LinkException>(() => new Instance(store, module, global));
    }

    [Fact]
    public void GivenTableAndMemoryFromTheHost_WhenGuestGrowsThem_ThenTheHostSeesTheNewSizes()
    {
        using var store = new Store(_engine);
        var table = new Table(store, ValueKind.FuncRef, 1, 4);
        var memory = new Memory(store, 1, 3);
        var linker = new Linker(_engine);
        linker.Define("env", "t", table);
        linker.Define("env", "m", memory);
        var instance = linker.Instantiate(store, Module.FromBytes(_engine, "m", Wat.ToWasm("""
            (module
              (import "env" "t" (table 1 funcref))
              (import "env" "m" (memory 1))
              (func (export "grow") (result i32)
                (drop (memory.grow (i32.const 2)))
                (table.grow 0 (ref.null func) (i32.const 3))))
            """)));
        instance.GetFunction("grow")!.Invoke().ShouldBe(1);
        table.Size.ShouldBe(4);
        memory.Pages.ShouldBe(3);
        memory.Grow(1).ShouldBe(-1);
    }

    [Fact]
    public void GivenFunctionOfAnotherStore_WhenImported_ThenLinkException()
    {
        var (other, instance) = Wat.Instantiate(_engine, Fib);
        using var _ = other;
        using var store = new Store(_engine);
        var linker = new Linker(_engine);
        linker.Define("env", "fib", instance.GetFunction("fib")!);
        var module = Module.FromBytes(_engine, "m", Wat.ToWasm("""(module (import "env" "fib" (func (param i32) (result i32))))"""));
        Should.Throw<LinkException>(() => linker.Instantiate(store, module)).Message.ShouldContain("another store");
    }

    [Fact]
    public void GivenStoreRun_WhenManyCallsAreBatched_ThenTheyRunOnTheGuestThread()
    {
        var (store, instance) = Wat.Instantiate(_engine, Fib);
        using var _ = store;
        var fib = instance.GetFunction<int, int>("fib")!;
        var caller = Environment.CurrentManagedThreadId;
        var (sum, thread) = store.Run(() => (Enumerable.Range(0, 1000).Sum(i => fib(i % 10)), Environment.CurrentManagedThreadId));
        sum.ShouldBe(100 * 88);
        thread.ShouldNotBe(caller);
    }
}
