namespace Propeller.Wasm.Tests;

public sealed class TrapTests : IDisposable
{
    /// <summary>`down(n)` recurses n deep and returns n; `forever` recurses without end.</summary>
    internal const string Recursion = """
        (module
          (func $down (export "down") (param i32) (result i32)
            (if (result i32) (i32.eqz (local.get 0))
              (then (i32.const 0))
              (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1)))))))
          (func $forever (export "forever") (call $forever)))
        """;

    private readonly Engine _engine = new(new Config().WithMaxCallDepth(5_000));

    public void Dispose() => _engine.Dispose();

    [Fact]
    public void GivenInfiniteRecursion_WhenCalled_ThenCallStackExhaustedTrapAndTheStoreStaysUsable()
    {
        var (store, instance) = Wat.Instantiate(_engine, Recursion);
        using var _ = store;
        var trap = Should.Throw<TrapException>(() => instance.GetFunction("forever")!.Call());
        trap.Code.ShouldBe(TrapCode.StackOverflow);
        trap.Text.ShouldBe("call stack exhausted");
        trap.FunctionName.ShouldBe("forever");
        trap.Frames.Count.ShouldBeGreaterThan(100);
        trap.Frames.ShouldAllBe(f => f == "forever");
        instance.GetFunction("down")!.Invoke(4_000).ShouldBe(4_000);
        Should.Throw<TrapException>(() => instance.GetFunction("down")!.Invoke(6_000)).Code.ShouldBe(TrapCode.StackOverflow);
    }

    [Fact]
    public void GivenHugeFramesAndDefaultDepth_WhenRecursingForever_ThenTheStackFloorTrapsFirst()
    {
        using var engine = new Engine(new Config().WithMaxCallDepth(10_000_000).WithGuestStackSize(16 << 20));
        var locals = string.Concat(Enumerable.Repeat(" f64", 400));
        var (store, instance) = Wat.Instantiate(engine, $$"""
            (module (func $f (export "f") (param f64) (result f64) (local {{locals}})
              (f64.add (local.get 0) (call $f (local.get 0)))))
            """);
        using var _ = store;
        Should.Throw<TrapException>(() => instance.GetFunction("f")!.Invoke(1.0)).Code.ShouldBe(TrapCode.StackOverflow);
    }

    [Fact]
    public void GivenTableTraps_WhenCallingIndirect_ThenEachHasItsSpecText()
    {
        var (store, instance) = Wat.Instantiate(_engine, """
            (module
              (type $v (func))
              (type $i (func (result i32)))
              (table 3 funcref)
              (func $nop)
              (elem (i32.const 0) $nop)
              (func (export "call_i") (param i32) (result i32) (call_indirect (type $i) (local.get 0)))
              (func (export "unreachable") unreachable))
            """);
        using var _ = store;
        var call = instance.GetFunction("call_i")!;
        Should.Throw<TrapException>(() => call.Invoke(0)).Code.ShouldBe(TrapCode.BadSignature);
        Should.Throw<TrapException>(() => call.Invoke(1)).Text.ShouldBe("uninitialized element");
        Should.Throw<TrapException>(() => call.Invoke(3)).Text.ShouldBe("undefined element");
        Should.Throw<TrapException>(() => instance.GetFunction("unreachable")!.Call()).Code.ShouldBe(TrapCode.Unreachable);
    }

    [Fact]
    public void GivenStartFunctionThatTraps_WhenInstantiating_ThenTrapAndEarlierSegmentsStayWritten()
    {
        using var store = new Store(_engine);
        var linker = new Linker(_engine);
        var memory = new Memory(store, 1);
        linker.Define("env", "mem", memory);
        var module = Module.FromBytes(_engine, "m", Wat.ToWasm("""
            (module (import "env" "mem" (memory 1))
              (data (i32.const 0) "ok")
              (func $start unreachable)
              (start $start))
            """));
        Should.Throw<TrapException>(() => linker.Instantiate(store, module)).Code.ShouldBe(TrapCode.Unreachable);
        memory.ReadString(0, 2).ShouldBe("ok");
    }
}
