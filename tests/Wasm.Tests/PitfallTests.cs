namespace Propeller.Wasm.Tests;

/// <summary>The .NET pitfalls listed in wasm-engine-reference.md §2.3, each checked against the compiled code.</summary>
public sealed class PitfallTests : IDisposable
{
    private readonly Engine _engine = new();
    private readonly Store _store;
    private readonly Instance _instance;

    public PitfallTests()
    {
        (_store, _instance) = Wat.Instantiate(_engine, """
            (module
              (func (export "rem_s") (param i32 i32) (result i32) (i32.rem_s (local.get 0) (local.get 1)))
              (func (export "rem_s64") (param i64 i64) (result i64) (i64.rem_s (local.get 0) (local.get 1)))
              (func (export "div_s") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
              (func (export "div_u") (param i32 i32) (result i32) (i32.div_u (local.get 0) (local.get 1)))
              (func (export "trunc") (param f64) (result i32) (i32.trunc_f64_s (local.get 0)))
              (func (export "trunc_sat") (param f64) (result i32) (i32.trunc_sat_f64_s (local.get 0)))
              (func (export "trunc_sat_u64") (param f32) (result i64) (i64.trunc_sat_f32_u (local.get 0)))
              (func (export "neg") (param i32) (result i32) (i32.reinterpret_f32 (f32.neg (f32.reinterpret_i32 (local.get 0)))))
              (func (export "abs") (param i32) (result i32) (i32.reinterpret_f32 (f32.abs (f32.reinterpret_i32 (local.get 0)))))
              (func (export "snan") (result i32) (i32.reinterpret_f32 (f32.const nan:0x200000)))
              (func (export "mul_one") (param i32) (result i32) (i32.reinterpret_f32 (f32.mul (f32.reinterpret_i32 (local.get 0)) (f32.const 1))))
              (func (export "nearest") (param f64) (result f64) (f64.nearest (local.get 0)))
              (func (export "shl") (param i32 i32) (result i32) (i32.shl (local.get 0) (local.get 1)))
              (func (export "u64_to_f32") (param i64) (result f32) (f32.convert_i64_u (local.get 0)))
            )
            """);
    }

    public void Dispose()
    {
        _store.Dispose();
        _engine.Dispose();
    }

    [Fact]
    public void GivenIntMinValue_WhenRemSByMinusOne_ThenZeroNotOverflow()
    {
        Call("rem_s", int.MinValue, -1).ShouldBe(0);
        Call("rem_s64", long.MinValue, -1L).ShouldBe(0L);
    }

    [Fact]
    public void GivenIntMinValue_WhenDivSByMinusOne_ThenIntegerOverflowTrap()
    {
        var trap = Should.Throw<TrapException>(() => Call("div_s", int.MinValue, -1));
        trap.Code.ShouldBe(TrapCode.IntegerOverflow);
        trap.Text.ShouldBe("integer overflow");
    }

    [Fact]
    public void GivenZeroDivisor_WhenDivU_ThenDivideByZeroTrapNamesTheFunction()
    {
        var trap = Should.Throw<TrapException>(() => Call("div_u", 1, 0));
        trap.Code.ShouldBe(TrapCode.IntegerDivisionByZero);
        trap.Message.ShouldStartWith("integer divide by zero");
    }

    [Fact]
    public void GivenNaNOrHuge_WhenTruncating_ThenTrapOrSaturate()
    {
        Should.Throw<TrapException>(() => Call("trunc", double.NaN)).Code.ShouldBe(TrapCode.BadConversionToInteger);
        Should.Throw<TrapException>(() => Call("trunc", 3e9)).Code.ShouldBe(TrapCode.IntegerOverflow);
        Call("trunc", -2147483648.9).ShouldBe(int.MinValue);
        Call("trunc_sat", 3e9).ShouldBe(int.MaxValue);
        Call("trunc_sat", -3e9).ShouldBe(int.MinValue);
        Call("trunc_sat", double.NaN).ShouldBe(0);
        Call("trunc_sat_u64", -5f).ShouldBe(0L);
        Call("trunc_sat_u64", float.PositiveInfinity).ShouldBe(-1L);
    }

    [Fact]
    public void GivenSignallingNaN_WhenNegAbsOrConstant_ThenPayloadKept()
    {
        Call("neg", 0x7fa00000).ShouldBe(unchecked((int)0xffa00000));
        Call("abs", unchecked((int)0xffa00000)).ShouldBe(0x7fa00000);
        Call("snan").ShouldBe(0x7fa00000);
    }

    [Fact]
    public void GivenSignallingNaN_WhenMultipliedByOne_ThenQuietedNotFolded()
    {
        ((int)Call("mul_one", 0x7fa00000)! & 0x7fc00000).ShouldBe(0x7fc00000);
    }

    [Fact]
    public void GivenHalves_WhenNearest_ThenTiesToEven()
    {
        Call("nearest", 2.5).ShouldBe(2.0);
        Call("nearest", -3.5).ShouldBe(-4.0);
    }

    [Fact]
    public void GivenLargeCount_WhenShifting_ThenCountIsMasked()
    {
        Call("shl", 1, 33).ShouldBe(2);
    }

    [Fact]
    public void GivenTopBitSet_WhenU64ToF32_ThenRoundedOnce()
    {
        // 0x8000_0080_0000_0001 rounds up only if the sticky bit survives the halving.
        Call("u64_to_f32", unchecked((long)0x8000008000000001)).ShouldBe(9.223373e18f);
    }

    private object? Call(string name, params object[] args) => _instance.GetFunction(name)!.Invoke(args);
}
