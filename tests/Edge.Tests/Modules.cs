using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>Small test modules, assembled from text at test time.</summary>
internal static class Modules
{
    /// <summary>The demo's addition module: main(i32, i32) -> i32 (seed 002).</summary>
    public const string AdditionBase64 = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL";

    public static byte[] Addition => Convert.FromBase64String(AdditionBase64);

    /// <summary>A command (<c>_start</c>) that sleeps <paramref name="each"/> (WASI poll_oneoff on the monotonic clock),
    /// once and ends, or again and again for ever (a daemon).</summary>
    public static byte[] Sleeps(TimeSpan each, bool forever) => Wat.ToWasm($$"""
        (module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const {{(long)each.TotalNanoseconds}}))
            {{(forever ? "(loop $again (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))) (br $again))" : "(drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))")}}))
        """);

    public static byte[] Hello => Wat.ToWasm("""
        (module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "hello from wasi\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 16))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
        """);

    public static byte[] ExitThree => Wat.ToWasm("""
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const 3))))
        """);

    public static byte[] Trap => Wat.ToWasm("""(module (func (export "main") (result i32) unreachable))""");

    public static byte[] Spin => Wat.ToWasm("""(module (func (export "main") (loop $l (br $l))))""");

    public static byte[] Grow => Wat.ToWasm("""
        (module (memory 1) (func (export "main") (result i32) (memory.grow (i32.const 100))))
        """);

    public static byte[] Numbers => Wat.ToWasm("""
        (module
          (func (export "half") (param f64) (result f64) (f64.mul (local.get 0) (f64.const 0.5)))
          (func (export "neg64") (param i64) (result i64) (i64.sub (i64.const 0) (local.get 0)))
          (func (export "third") (param f32) (result f32) (f32.div (local.get 0) (f32.const 3)))
          (func (export "nothing")))
        """);
}
