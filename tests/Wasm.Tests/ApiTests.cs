namespace Propeller.Wasm.Tests;

public sealed class ApiTests : IDisposable
{
    private readonly Engine _engine = new();

    public void Dispose() => _engine.Dispose();

    [Fact]
    public void GivenExportedFunction_WhenCalledTypedAndUntyped_ThenResultsAgree()
    {
        var (store, instance) = Wat.Instantiate(_engine, """
            (module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
            """);
        using var _ = store;
        instance.GetFunction<int, int, int>("add")!(2, 3).ShouldBe(5);
        instance.GetFunction("add")!.Call(Value.I32(-1), Value.I32(1))[0].AsI32.ShouldBe(0);
        Should.Throw<WasmException>(() => instance.GetFunction("add")!.Call(Value.I64(1), Value.I32(1)));
    }

    [Fact]
    public void GivenMultiValueFunction_WhenCalled_ThenAllResultsReturned()
    {
        var (store, instance) = Wat.Instantiate(_engine, """
            (module
              (func $swap (param i32 i64) (result i64 i32) (local.get 1) (local.get 0))
              (func (export "swap3") (param i32 i64 f64) (result f64 i64 i32)
                (local.get 2) (call $swap (local.get 0) (local.get 1))))
            """);
        using var _ = store;
        var results = instance.GetFunction("swap3")!.Call(Value.I32(7), Value.I64(8), Value.F64(1.5));
        results.ShouldBe([Value.F64(1.5), Value.I64(8), Value.I32(7)]);
    }

    [Fact]
    public void GivenTypedHostFunctionWithCaller_WhenWasmCallsIt_ThenItReadsCallerMemory()
    {
        var linker = new Linker(_engine);
        string? seen = null;
        linker.DefineFunction("env", "log", (Caller caller, int ptr, int len) =>
        {
            seen = caller.GetMemory("memory")!.ReadString(ptr, len);
        });
        linker.DefineFunction("env", "twice", (long x) => x * 2);
        var (store, instance) = Wat.Instantiate(_engine, """
            (module
              (import "env" "log" (func $log (param i32 i32)))
              (import "env" "twice" (func $twice (param i64) (result i64)))
              (memory (export "memory") 1)
              (data (i32.const 16) "hello")
              (func (export "run") (result i64) (call $log (i32.const 16) (i32.const 5)) (call $twice (i64.const 21))))
            """, linker);
        using var _ = store;
        instance.GetFunction("run")!.Invoke().ShouldBe(42L);
        seen.ShouldBe("hello");
    }

    [Fact]
    public void GivenUntypedHostFunctionWithTwoResults_WhenCalledFromWasm_ThenBothArrive()
    {
        var linker = new Linker(_engine);
        linker.DefineFunction("env", "divmod", new FuncType([ValueKind.I32, ValueKind.I32], [ValueKind.I32, ValueKind.I32]),
            (caller, args, results) =>
            {
                results[0] = Value.I32(args[0].AsI32 / args[1].AsI32);
                results[1] = Value.I32(args[0].AsI32 % args[1].AsI32);
            });
        var (store, instance) = Wat.Instantiate(_engine, """
            (module
              (import "env" "divmod" (func $divmod (param i32 i32) (result i32 i32)))
              (func (export "f") (result i32) (call $divmod (i32.const 17) (i32.const 5)) (i32.sub)))
            """, linker);
        using var _ = store;
        instance.GetFunction("f")!.Invoke().ShouldBe(1);
    }

    [Fact]
    public void GivenHostException_WhenThrownInsideHostFunction_ThenItReachesTheCallerUnchanged()
    {
        var linker = new Linker(_engine);
        linker.DefineFunction("env", "fail", new Action(() => throw new InvalidOperationException("host says no")));
        var (store, instance) = Wat.Instantiate(_engine, """
            (module (import "env" "fail" (func $fail)) (func (export "f") (call $fail)))
            """, linker);
        using var _ = store;
        Should.Throw<InvalidOperationException>(() => instance.GetFunction("f")!.Call()).Message.ShouldBe("host says no");
        Should.Throw<InvalidOperationException>(() => instance.GetFunction("f")!.Call());
    }

    [Fact]
    public void GivenSharedMemoryTableAndMutableGlobal_WhenImportedByASecondInstance_ThenBothSeeTheSameCells()
    {
        using var store = new Store(_engine);
        var linker = new Linker(_engine);
        var exporter = linker.Instantiate(store, Module.FromBytes(_engine, "a", Wat.ToWasm("""
            (module
              (memory (export "mem") 1 2)
              (table (export "tab") 2 funcref)
              (global (export "g") (mut i32) (i32.const 5))
              (func $seven (result i32) (i32.const 7))
              (elem (i32.const 0) $seven))
            """)));
        linker.DefineInstance("a", exporter);
        var importer = linker.Instantiate(store, Module.FromBytes(_engine, "b", Wat.ToWasm("""
            (module
              (import "a" "mem" (memory 1))
              (import "a" "tab" (table 2 funcref))
              (import "a" "g" (global $g (mut i32)))
              (type $t (func (result i32)))
              (func (export "run") (result i32)
                (i32.store (i32.const 8) (i32.const 99))
                (global.set $g (i32.add (global.get $g) (i32.const 1)))
                (call_indirect (type $t) (i32.const 0))))
            """)));
        importer.GetFunction("run")!.Invoke().ShouldBe(7);
        exporter.GetMemory("mem")!.ReadInt32(8).ShouldBe(99);
        exporter.GetGlobal("g")!.Value.AsI32.ShouldBe(6);
        exporter.GetTable("tab")!.GetElement(0).ShouldBeOfType<Function>().Name.ShouldBe("seven");
    }

    [Fact]
    public void GivenExternRef_WhenRoundTrippedThroughATable_ThenTheSameObjectComesBack()
    {
        var (store, instance) = Wat.Instantiate(_engine, """
            (module
              (table $t 1 externref)
              (func (export "put") (param externref) (table.set $t (i32.const 0) (local.get 0)))
              (func (export "get") (result externref) (table.get $t (i32.const 0))))
            """);
        using var _ = store;
        var payload = new object();
        instance.GetFunction("put")!.Call(Value.ExternRef(payload));
        instance.GetFunction("get")!.Call()[0].Reference.ShouldBeSameAs(payload);
    }

    [Fact]
    public void GivenSameBytes_WhenCompiledTwiceAndInstantiatedTwice_ThenCodeIsCachedAndStateIsSeparate()
    {
        var bytes = Wat.ToWasm("""
            (module (memory (export "m") 1)
              (func (export "bump") (result i32)
                (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
                (i32.load (i32.const 0))))
            """);
        using var store = new Store(_engine);
        var a = new Instance(store, Module.FromBytes(_engine, "m", bytes));
        var b = new Instance(store, Module.FromBytes(_engine, "m", bytes));
        _engine.CachedModuleCount.ShouldBe(1);
        a.GetFunction("bump")!.Invoke().ShouldBe(1);
        a.GetFunction("bump")!.Invoke().ShouldBe(2);
        b.GetFunction("bump")!.Invoke().ShouldBe(1);
    }

    [Fact]
    public void GivenMissingOrMismatchedImport_WhenLinking_ThenLinkException()
    {
        using var store = new Store(_engine);
        var module = Module.FromBytes(_engine, "m", Wat.ToWasm("""(module (import "env" "f" (func (param i32))))"""));
        Should.Throw<LinkException>(() => new Linker(_engine).Instantiate(store, module)).Message.ShouldContain("unknown import");
        var linker = new Linker(_engine);
        linker.DefineFunction("env", "f", (long x) => { });
        Should.Throw<LinkException>(() => linker.Instantiate(store, module)).Message.ShouldContain("incompatible import type");
        module.Imports.Single().FunctionType!.Parameters.ShouldBe([ValueKind.I32]);
    }

    [Fact]
    public void GivenMemoryWithMaximum_WhenGrowingPastIt_ThenMinusOneAndOutOfBoundsTraps()
    {
        var (store, instance) = Wat.Instantiate(_engine, """
            (module (memory 1 2)
              (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
              (func (export "load") (param i32) (result i32) (i32.load (local.get 0))))
            """);
        using var _ = store;
        instance.GetFunction("grow")!.Invoke(1).ShouldBe(1);
        instance.GetFunction("grow")!.Invoke(1).ShouldBe(-1);
        instance.GetFunction("load")!.Invoke(131068).ShouldBe(0);
        var trap = Should.Throw<TrapException>(() => instance.GetFunction("load")!.Invoke(131069));
        trap.Code.ShouldBe(TrapCode.MemoryOutOfBounds);
        trap.FunctionName.ShouldNotBeNull();
    }
}
