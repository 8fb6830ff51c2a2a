namespace Propeller.Wasm.Tests;

public sealed class DecoderTests : IDisposable
{
    private readonly Engine _engine = new();

    public void Dispose() => _engine.Dispose();

    [Fact]
    public void GivenPaddedLebs_WhenDecoding_ThenAccepted()
    {
        // type section with a 5-byte padded count and a function returning a 5-byte padded i32.const 1.
        byte[] bytes =
        [
            0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
            1, 9, 0x81, 0x80, 0x80, 0x80, 0x00, 0x60, 0, 1, 0x7f,
            3, 2, 1, 0,
            7, 5, 1, 1, (byte)'f', 0, 0,
            10, 10, 1, 8, 0, 0x41, 0x81, 0x80, 0x80, 0x80, 0x00, 0x0b,
        ];
        using var store = new Store(_engine);
        new Instance(store, Module.FromBytes(_engine, "m", bytes)).GetFunction("f")!.Invoke().ShouldBe(1);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0x61, 0x73 }, "unexpected end", 0)]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6e, 1, 0, 0, 0 }, "magic header not detected", 0)]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6d, 2, 0, 0, 0 }, "unknown binary version", 4)]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 0x81, 0x80, 0x80, 0x80, 0x70 }, "integer too large", 10)]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0x0d, 0 }, "malformed section id", 8)]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 0x7f }, "length out of bounds", 10)]
    public void GivenMalformedBytes_WhenDecoding_ThenReasonAndOffset(byte[] bytes, string reason, long offset)
    {
        var error = Should.Throw<ModuleException>(() => Module.FromBytes(_engine, "bad", bytes));
        error.Kind.ShouldBe(ModuleErrorKind.Malformed);
        error.Reason.ShouldBe(reason);
        error.Offset.ShouldBe(offset);
    }

    [Fact]
    public void GivenTypeError_WhenValidating_ThenInvalidWithOffset()
    {
        var error = Should.Throw<ModuleException>(() =>
            Module.FromBytes(_engine, "bad", Wat.ToWasmUnchecked("(module (func (result i32) (i64.const 1)))")));
        error.Kind.ShouldBe(ModuleErrorKind.Invalid);
        error.Reason.ShouldBe("type mismatch");
        error.Offset.ShouldBeGreaterThan(8);
        Module.Validate(_engine, [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]).ShouldBeNull();
    }

    [Fact]
    public void GivenSimdInstruction_WhenCompiling_ThenUnsupportedNotACrash()
    {
        var bytes = Wat.ToWasm("(module (func (result i32) (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4))))");
        Should.Throw<ModuleException>(() => Module.FromBytes(_engine, "simd", bytes)).Kind.ShouldBe(ModuleErrorKind.Unsupported);
    }

    [Fact]
    public void GivenRandomMutations_WhenDecoding_ThenOnlyModuleExceptionsAndNoCrash()
    {
        var seed = Wat.ToWasm("""
            (module
              (type $t (func (param i32) (result i32)))
              (import "env" "f" (func $f (type $t)))
              (memory 1 4) (table 4 funcref) (global $g (mut i64) (i64.const 3))
              (func $loop (export "loop") (param i32) (result i32) (local i64 f32)
                (block $out (loop $top
                  (br_if $out (i32.eqz (local.get 0)))
                  (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
                  (i64.store offset=8 (i32.const 0) (global.get $g))
                  (br_table $top $out (local.get 0))))
                (select (call $f (local.get 0)) (i32.const 2) (local.get 0)))
              (elem (i32.const 0) $loop)
              (data (i32.const 0) "abc"))
            """);
        var random = new Random(4);
        var accepted = 0;
        for (var i = 0; i < 3_000; i++)
        {
            var bytes = (byte[])seed.Clone();
            var edits = random.Next(1, 4);
            for (var e = 0; e < edits; e++)
            {
                bytes[random.Next(8, bytes.Length)] = (byte)random.Next(256);
            }

            if (random.Next(4) == 0)
            {
                bytes = bytes[..random.Next(8, bytes.Length)];
            }

            try
            {
                Module.FromBytes(_engine, "fuzz", bytes);
                accepted++;
            }
            catch (ModuleException)
            {
            }
        }

        accepted.ShouldBeLessThan(3_000);
    }

    [Fact]
    public void GivenExtremeButValidShapes_WhenCompiledAndRun_ThenTheyWork()
    {
        // 50k nested blocks, then a 50k-entry br_table: the compiler is not recursive, and the JIT runs on the guest thread.
        const int n = 50_000;
        var body = new List<byte> { 0 };
        for (var i = 0; i < n; i++)
        {
            body.AddRange([0x02, 0x40]);
        }

        body.AddRange([0x20, 0x00, 0x0e]);
        body.AddRange(Leb(n));
        for (var i = 0; i < n; i++)
        {
            body.AddRange(Leb(i));
        }

        body.Add(0x00);
        body.AddRange(Enumerable.Repeat((byte)0x0b, n));
        body.AddRange([0x41, 0x07, 0x0b]);
        byte[] header = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 6, 1, 0x60, 1, 0x7f, 1, 0x7f, 3, 2, 1, 0, 7, 5, 1, 1, (byte)'f', 0, 0];
        var code = new List<byte>();
        code.AddRange(Leb(1));
        code.AddRange(Leb(body.Count));
        code.AddRange(body);
        var module = new List<byte>(header) { 10 };
        module.AddRange(Leb(code.Count));
        module.AddRange(code);
        using var store = new Store(_engine);
        var f = new Instance(store, Module.FromBytes(_engine, "deep", module.ToArray())).GetFunction("f")!;
        f.Invoke(12_345).ShouldBe(7);
    }

    private static byte[] Leb(int value)
    {
        var bytes = new List<byte>();
        var v = (uint)value;
        do
        {
            var b = (byte)(v & 0x7f);
            v >>= 7;
            bytes.Add(v != 0 ? (byte)(b | 0x80) : b);
        }
        while (v != 0);
        return [.. bytes];
    }
}
