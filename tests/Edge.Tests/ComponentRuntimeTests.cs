using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;
using Propeller.Tests.Shared;
using Propeller.WasmHost;
using Propeller.WasmHost.Components;

namespace Propeller.Edge.Tests;

public sealed class ComponentRuntimeTests : IDisposable
{
    private const string Greeter = "propeller:test/greeter@0.1.0";

    private readonly InProcessRuntime _runtime = new(TestSettings.Create(), NullLogger<InProcessRuntime>.Instance);

    public void Dispose() => _runtime.Dispose();

    [Fact]
    public void GivenBinaries_WhenClassified_ThenTheLayerByteTellsAComponentFromACoreModule()
    {
        WasmBinary.IsComponent(Components.Calculator).ShouldBeTrue();
        WasmBinary.IsComponent(Modules.Addition).ShouldBeFalse();
        WasmBinary.IsComponent([0, 0x61, 0x73]).ShouldBeFalse();
        WasmBinary.IsHttpProxy(Components.Calculator).ShouldBeFalse();
    }

    [Fact]
    public void GivenTheCalculator_WhenItsTypesAreRead_ThenEveryExportHasItsWitSignature()
    {
        var component = new ModuleCache(WasmEngine.Shared).GetOrCompileComponent(Components.Calculator);

        string Signature(string name)
        {
            var f = component.Find(name).ShouldNotBeNull();
            return $"({string.Join(", ", f.Parameters.Select(p => $"{p.Name}: {p.Type}"))}) -> {f.Result?.ToString() ?? "()"}";
        }

        Signature("add").ShouldBe("(a: s32, b: s32) -> s32");
        Signature("echo-point").ShouldBe("(v: record {x: s32, y: s32}) -> record {x: s32, y: s32}");
        Signature("echo-shape").ShouldBe("(v: variant {circle(f64), square(u32), empty}) -> variant {circle(f64), square(u32), empty}");
        Signature("echo-color").ShouldBe("(v: enum {red, green, blue}) -> enum {red, green, blue}");
        Signature("echo-perms").ShouldBe("(v: flags {read, write, exec}) -> flags {read, write, exec}");
        Signature("echo-option").ShouldBe("(v: option<u8>) -> option<u8>");
        Signature("echo-result").ShouldBe("(v: result<string, u32>) -> result<string, u32>");
        Signature("echo-tuple").ShouldBe("(v: tuple<u8, string>) -> tuple<u8, string>");
        Signature("echo-list").ShouldBe("(v: list<u32>) -> list<u32>");
        Signature("nothing").ShouldBe("() -> ()");
        Signature($"{Greeter}#greet").ShouldBe("(name: string) -> string");
        component.Find("greet").ShouldNotBeNull().Interface.ShouldBe(Greeter);
        component.Find("nope").ShouldBeNull();
        component.Find($"{Greeter}#add").ShouldBeNull();
    }

    [Theory]
    [InlineData("add", new[] { "10", "32" }, "42")]
    [InlineData("echo-bool", new[] { "true" }, "true")]
    [InlineData("echo-s8", new[] { "-128" }, "-128")]
    [InlineData("echo-u16", new[] { "65535" }, "65535")]
    [InlineData("echo-u32", new[] { "4294967295" }, "4294967295")]
    [InlineData("echo-s64", new[] { "-9223372036854775808" }, "-9223372036854775808")]
    [InlineData("echo-u64", new[] { "18446744073709551615" }, "18446744073709551615")]
    [InlineData("echo-f32", new[] { "1.5" }, "1.5")]
    [InlineData("echo-f64", new[] { "-0.1" }, "-0.1")]
    [InlineData("echo-f64", new[] { "inf" }, "inf")]
    [InlineData("echo-char", new[] { "'x'" }, "'x'")]
    [InlineData("echo-string", new[] { "\"world\"" }, "\"world\"")]
    [InlineData("echo-list", new[] { "[1, 2, 3]" }, "[1, 2, 3]")]
    [InlineData("echo-list", new[] { "[]" }, "[]")]
    [InlineData("echo-point", new[] { "{x: 1, y: -2}" }, "{x: 1, y: -2}")]
    [InlineData("echo-option", new[] { "some(7)" }, "some(7)")]
    [InlineData("echo-option", new[] { "none" }, "none")]
    [InlineData("echo-result", new[] { "ok(\"a\")" }, "ok(\"a\")")]
    [InlineData("echo-result", new[] { "err(5)" }, "err(5)")]
    [InlineData("echo-tuple", new[] { "(1, \"b\")" }, "(1, \"b\")")]
    [InlineData("echo-shape", new[] { "circle(2.5)" }, "circle(2.5)")]
    [InlineData("echo-shape", new[] { "square(4)" }, "square(4)")]
    [InlineData("echo-shape", new[] { "empty" }, "empty")]
    [InlineData("echo-color", new[] { "green" }, "green")]
    [InlineData("echo-perms", new[] { "{exec, read}" }, "{read, exec}")]
    [InlineData("nothing", new string[0], "")]
    [InlineData(Greeter + "#greet", new[] { "\"world\"" }, "\"Hello, world\"")]
    [InlineData("greet", new[] { "\"bare\"" }, "\"Hello, bare\"")]
    public async Task GivenACustomExport_WhenRunWithWaveInputs_ThenTheFirstResultIsWaveEncoded(string name, string[] inputs, string expected)
    {
        (await RunAsync(Components.Calculator, name, inputs)).ShouldBe(TaskOutcome.Success(expected));
    }

    [Fact]
    public async Task GivenBadCalls_WhenRun_ThenTheErrorsAreTheOriginals()
    {
        using var task = NewTask("nope", [], null);
        (await _runtime.RunAsync(task, Components.Calculator, Ct)).Error.ShouldBe($"Export 'nope' not found in component for task {task.Id}");
        (await RunAsync(Components.Calculator, "add", ["1"])).Error.ShouldBe("Argument count mismatch for 'add': expected 2 but got 1");
        (await RunAsync(Components.Calculator, "add", ["1", "two"])).Error
            .ShouldBe("Failed to parse WAVE argument 'two' for export 'add': expected a s32 (a decimal integer) at 0");
        (await RunAsync(Components.Calculator, "echo-string", ["world"])).Error
            .ShouldBe("Failed to parse WAVE argument 'world' for export 'echo-string': expected a string in \"quotes\" at 0");
    }

    [Fact]
    public async Task GivenAnExportThatTraps_WhenRun_ThenTheTrapIsTheError()
    {
        (await RunAsync(Components.Calculator, "trap", [])).Error.ShouldBe("Failed to call export 'trap' on component: wasm trap: unreachable");
    }

    [Fact]
    public async Task GivenASpinningExport_WhenItsFuelOrTimeRunsOut_ThenItEnds()
    {
        (await RunAsync(Components.Calculator, "spin", [], new TaskLimits(1_000_000, null, null))).Error
            .ShouldBe("Failed to call export 'spin' on component: wasm trap: all fuel consumed (fuel limit 1000000)");

        using var task = NewTask("spin", [], null);
        var running = _runtime.RunAsync(task, Components.Calculator, Ct);
        task.Abort(StopReason.Stopped);
        (await running.WaitAsync(TimeSpan.FromSeconds(30), Ct)).Error.ShouldBe($"Task {task.Id} was stopped before completion");
    }

    [Fact]
    public async Task GivenACommand_WhenRun_ThenStdoutAndStderrAreTheResult()
    {
        (await RunAsync(Components.Command("hello from a component\n"), "_start", [])).ShouldBe(TaskOutcome.Success("hello from a component\n"));
        (await RunAsync(Components.Command("out\n", "warn\n"), "", [])).ShouldBe(TaskOutcome.Success("out\n\nwarn\n"));
        (await RunAsync(Components.Command("round\n"), "fl-round-1-p1", [])).ShouldBe(TaskOutcome.Success("round\n"));
    }

    [Fact]
    public async Task GivenACommandThatFails_WhenRun_ThenTheErrorsAreTheOriginals()
    {
        using var task = NewTask("_start", [], null);
        (await _runtime.RunAsync(task, Components.Command("x", runBody: "(i32.const 1)"), Ct)).Error.ShouldBe($"Component for task {task.Id} exited with error");
        (await RunAsync(Components.Command(runBody: "(unreachable)"), "_start", [])).Error
            .ShouldBe("Failed to call wasi:cli/run on component: wasm trap: unreachable");
        (await RunAsync(Components.Command(runBody: "(loop $l (br $l)) (i32.const 0)"), "_start", [], new TaskLimits(1_000_000, null, null)))
            .Error.ShouldBe("Failed to call wasi:cli/run on component: wasm trap: all fuel consumed (fuel limit 1000000)");
    }

    [Fact]
    public async Task GivenACommandWritingMoreThanTheLimit_WhenRun_ThenTheOutputIsCappedAndTheRunSucceeds()
    {
        var outcome = await RunAsync(Components.Command(new string('x', 1000), repeat: 10), "_start", []);

        outcome.Succeeded.ShouldBeTrue();
        outcome.Results.Length.ShouldBe(TestSettings.Create().OutputLimit);
    }

    [Fact]
    public async Task GivenComponentsThatCannotRun_WhenRun_ThenTheErrorsSayWhy()
    {
        var orphan = Components.FromText("""(component (import "nope:missing/thing@1.0.0" (func)))""");
        (await RunAsync(orphan, "_start", [])).Error.ShouldBe("Failed to instantiate WASM command component: the component does not export wasi:cli/run");
        (await RunAsync([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0, 0xff], "_start", [])).Error.ShouldNotBeNull()
            .ShouldStartWith("Failed to compile WASM component from binary:");

        var unlinkable = Components.FromText("""
            (component
              (import "nope:missing/thing@1.0.0" (func $f))
              (core func $g (canon lower (func $f)))
              (core module $m (import "" "f" (func)) (func (export "run") (result i32) (i32.const 0)))
              (core instance $i (instantiate $m (with "" (instance (export "f" (func $g))))))
              (func $run (result (result)) (canon lift (core func $i "run")))
              (instance $r (export "run" (func $run)))
              (export "wasi:cli/run@0.2.0" (instance $r)))
            """);
        (await RunAsync(unlinkable, "_start", [])).Error.ShouldNotBeNull().ShouldStartWith("Failed to instantiate WASM command component:");
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenAnHttpProxyComponent_WhenHttpIsOffOrItIsDeployedLatent_ThenTheAnswerIsAClearError()
    {
        WasmBinary.IsComponent(Components.Proxy).ShouldBeTrue();
        WasmBinary.IsHttpProxy(Components.Proxy).ShouldBeTrue();

        (await RunAsync(Components.Proxy, "", [])).Error.ShouldBe("HTTP proxy is disabled. Enable it by setting http_enabled=true in configuration");

        // Enabled, a start serves it (HttpProxyServingTests); a latent deployment is refused instead of being kept with no listener.
        using var enabled = new InProcessRuntime(TestSettings.Create() with { HttpEnabled = true }, NullLogger<InProcessRuntime>.Instance);
        using var latent = NewTask("", [], null);
        var preparation = enabled.Prepare(latent, Components.Proxy);
        preparation.Error.ShouldNotBeNull().ShouldStartWith("HTTP proxy components are served by a normal start");
        preparation.IsHttpProxy.ShouldBeFalse();
    }

    /// <summary>
    /// A custom export's list result is lifted one value per element (ADR 0015), bounded by Wasmtime's hostcall fuel (128
    /// MiB of those values per call): 1 MiB comes back, 16 MiB is refused with Wasmtime's reason instead of taking about
    /// 64 bytes of host memory per byte. Pins the bound an upgrade of Wasmtime could change.
    /// </summary>
    [Theory]
    [InlineData(1, null)]
    [InlineData(16, "Failed to call export 'big' on component: too much data is being copied between the host and the guest: fuel allocated for hostcalls has been exhausted")]
    public async Task GivenAnExportReturningALargeList_WhenCalled_ThenWasmtimesHostcallFuelBoundsIt(int mib, string? error)
    {
        var component = Wasmtime.Module.ConvertText($$"""
            (component
              (core module $m
                (memory (export "memory") 1)
                (func (export "big") (result i32)
                  (drop (memory.grow (i32.const {{(mib * 16) + 1}})))
                  (i32.store (i32.const 0) (i32.const 65536))
                  (i32.store (i32.const 4) (i32.const {{mib << 20}}))
                  (i32.const 0))
                (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0)))
              (core instance $i (instantiate $m))
              (func (export "big") (result (list u8))
                (canon lift (core func $i "big") (memory (core memory $i "memory")) (realloc (core func $i "realloc")))))
            """);

        var outcome = await RunAsync(component, "big", []);

        outcome.Error.ShouldBe(error);
        if (error is null)
        {
            outcome.Results.ShouldNotBeNull().ShouldStartWith("[0, 0, 0");
        }
    }

    /// <summary>
    /// A resource handle (here one the component defines, alone or inside a record) has no WAVE text (spec §2.5): the
    /// task fails saying so, before the guest runs, instead of the WAVE writer's exception reaching the runner as an
    /// internal proplet error after it ran.
    /// </summary>
    [Fact]
    public async Task GivenAnExportReturningAResource_WhenRun_ThenTheTaskFailsSayingItHasNoWaveText()
    {
        var component = Components.FromText("""
            (component
              (type $thing-def (resource (rep i32)))
              (export $thing "thing" (type $thing-def))
              (core func $new (canon resource.new $thing-def))
              (core module $m
                (import "" "new" (func $new (param i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "make") (result i32) (call $new (i32.const 42)))
                (func (export "boxed") (result i32) (i32.store (i32.const 16) (call $new (i32.const 7))) (i32.const 16)))
              (core instance $i (instantiate $m (with "" (instance (export "new" (func $new))))))
              (type $box-def (record (field "inner" (own $thing))))
              (export $box "box" (type $box-def))
              (func (export "make") (result (own $thing)) (canon lift (core func $i "make")))
              (func (export "boxed") (result $box) (canon lift (core func $i "boxed") (memory (core memory $i "memory")))))
            """);

        (await RunAsync(component, "make", [])).Error
            .ShouldBe("Export 'make' returns own, which has no WAVE text (a resource, future, stream or error-context cannot be a task's result)");
        (await RunAsync(component, "boxed", [])).Error
            .ShouldBe("Export 'boxed' returns record {inner: own}, which has no WAVE text (a resource, future, stream or error-context cannot be a task's result)");
    }

    private async Task<TaskOutcome> RunAsync(byte[] binary, string name, string[] inputs, TaskLimits? limits = null)
    {
        using var task = NewTask(name, inputs, limits);
        return await _runtime.RunAsync(task, binary, Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct);
    }

    private static RunningTask NewTask(string name, string[] inputs, TaskLimits? limits) => new(new StartRequest(
        new StartMessage { Id = Guid.NewGuid().ToString(), Name = name, Inputs = inputs },
        limits ?? new TaskLimits(null, null, null),
        MonitoringProfile.Standard));
}
