using System.Text;
using Propeller.Tests.Shared;
using Propeller.WasmHost;
using Propeller.WasmHost.Components.Http;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>
/// The wasi:http host of ADR 0015 without the server: proxy.wat's <c>handle</c> on a fresh instance per request, each
/// answer read from what the component set through <c>response-outparam</c> and wrote to its body stream.
/// </summary>
public sealed class HttpProxyComponentTests : IDisposable
{
    private readonly HttpProxyComponent _proxy = HttpProxyComponent.Create(
        WasmEngine.Shared.Engine, new ModuleCache(WasmEngine.Shared).GetOrCompileComponent(Components.Proxy));

    public void Dispose() => _proxy.Dispose();

    [Theory]
    [InlineData("GET", "/", "", 200, "hello, world")]
    [InlineData("POST", "/echo?x=1", "ping pong, a body longer than one read", 200, "/echo?x=1 ping pong, a body longer than one read")]
    [InlineData("GET", "/method", "", 200, "0")]
    [InlineData("POST", "/method", "", 200, "2")]
    [InlineData("GET", "/teapot", "", 418, "teapot")]
    public void GivenTheProxyComponent_WhenARequestIsHandled_ThenTheResponseIsWhatTheComponentSet(string method, string path, string body, int status, string expected)
    {
        var response = Handle(method, path, body);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(status);
        Encoding.UTF8.GetString(response.Body).ShouldBe(expected);
        response.Headers.ShouldContain(h => h.Key == "content-type" && Encoding.ASCII.GetString(h.Value) == "text/plain");
    }

    [Fact]
    public void GivenARequestHeader_WhenTheComponentReadsIt_ThenItsValueComesBack()
    {
        var response = Handle("GET", "/header", "", [new("X-Echo", "from the client"u8.ToArray())]);

        response.Error.ShouldBeNull();
        Encoding.UTF8.GetString(response.Body).ShouldBe("from the client");
    }

    [Theory]
    [InlineData("/trap", "unreachable")]
    [InlineData("/none", "the component returned from handle without setting a response")]
    [InlineData("/exit", "wasi:cli/exit with err")]
    [InlineData("/outgoing", "unknown import: `wasi:http/outgoing-handler@0.2.0#handle` has not been defined")]
    [InlineData("/unfinished", "the component did not call outgoing-body.finish: the response body is incomplete")]
    public void GivenAFailingRequest_WhenHandled_ThenTheResponseIsAnErrorAndTheNextRequestIsServed(string path, string error)
    {
        Handle("GET", path, "").Error.ShouldNotBeNull().ShouldContain(error);
        Handle("GET", "/", "").Status.ShouldBe(200);
    }

    [Fact]
    public void GivenASpinningHandler_WhenItsFuelRunsOut_ThenTheResponseSaysSo()
    {
        Handle("GET", "/spin", "", fuel: 1_000_000).Error.ShouldNotBeNull().ShouldContain("all fuel consumed");
    }

    /// <summary>
    /// Wasmtime does not check a host function against the type a component declared for its import: it passes as many
    /// arguments and result slots as the declared type has. An import declared with a parameter missing, one too many, no
    /// result or an argument of another type is refused by the host before it reads or writes anything: the request fails
    /// with "import …: signature mismatch" and the process (this test run) lives on to serve the next one.
    /// </summary>
    [Theory]
    [InlineData("read-without-len")]
    [InlineData("read-with-string-len")]
    [InlineData("environment-with-a-parameter")]
    [InlineData("stdin-without-result")]
    public void GivenAnImportDeclaredWithAnotherSignature_WhenTheComponentCallsIt_ThenTheRequestFailsWithASignatureMismatch(string probe)
    {
        var stdin = """(import "wasi:cli/stdin@0.2.0" (instance $stdin (alias outer $probe $input-stream (type $is)) (export "input-stream" (type $i (eq $is))) (export "get-stdin" (func (result (own $i))))))""";
        (string Name, string Lower, string CoreType) getStdin = ("get-stdin", """(canon lower (func $stdin "get-stdin"))""", "(result i32)");
        var (component, import) = probe switch
        {
            "read-without-len" => (Components.Probe(
                "(call $read (call $get-stdin) (i32.const 64)) (i32.const 200)",
                [getStdin, ("read", """(canon lower (func $streams "[method]input-stream.read") (memory $mem) (realloc $realloc))""", "(param i32 i32)")],
                streams: """(export "[method]input-stream.read" (func (param "self" (borrow $input-stream)) (result (result (list u8) (error $stream-error)))))""",
                imports: stdin), "wasi:io/streams@0.2.0#[method]input-stream.read"),
            "read-with-string-len" => (Components.Probe(
                "(call $read (call $get-stdin) (i32.const 0) (i32.const 0) (i32.const 64)) (i32.const 200)",
                [getStdin, ("read", """(canon lower (func $streams "[method]input-stream.read") (memory $mem) (realloc $realloc))""", "(param i32 i32 i32 i32)")],
                streams: """(export "[method]input-stream.read" (func (param "self" (borrow $input-stream)) (param "len" string) (result (result (list u8) (error $stream-error)))))""",
                imports: stdin), "wasi:io/streams@0.2.0#[method]input-stream.read"),
            "environment-with-a-parameter" => (Components.Probe(
                "(call $env (i32.const 7) (i32.const 64)) (i32.const 200)",
                [("env", """(canon lower (func $env "get-environment") (memory $mem) (realloc $realloc))""", "(param i32 i32)")],
                imports: """(import "wasi:cli/environment@0.2.0" (instance $env (export "get-environment" (func (param "x" u32) (result (list (tuple string string)))))))"""),
                "wasi:cli/environment@0.2.0#get-environment"),
            _ => (Components.Probe(
                "(call $get-stdin) (i32.const 200)",
                [("get-stdin", """(canon lower (func $stdin "get-stdin"))""", "")],
                imports: """(import "wasi:cli/stdin@0.2.0" (instance $stdin (export "get-stdin" (func))))"""),
                "wasi:cli/stdin@0.2.0#get-stdin"),
        };

        HandleProbe(component).Error.ShouldNotBeNull().ShouldContain($"import {import}: signature mismatch");
        Handle("GET", "/", "").Status.ShouldBe(200);
    }

    /// <summary>
    /// An import declared with the right parameters but another result type (get-environment returning a u32): the host
    /// function builds its list and Wasmtime refuses to lower it into the guest's u32, so the request fails with
    /// Wasmtime's type error and the next one is served.
    /// </summary>
    [Fact]
    public void GivenAnImportDeclaredWithAnotherResultType_WhenTheComponentCallsIt_ThenTheRequestFailsWithATypeError()
    {
        var component = Components.Probe(
            "(drop (call $env)) (i32.const 200)",
            [("env", """(canon lower (func $env "get-environment"))""", "(result i32)")],
            imports: """(import "wasi:cli/environment@0.2.0" (instance $env (export "get-environment" (func (result u32)))))""");

        HandleProbe(component).Error.ShouldNotBeNull().ShouldContain("type mismatch: expected u32, found list");
        Handle("GET", "/", "").Status.ShouldBe(200);
    }

    /// <summary>
    /// stdout and stderr keep their first 64 KiB and drop the rest silently: past the cap check-write still reports room
    /// and write, blocking-write-and-flush and write-zeroes (even one longer than the cap) succeed, so a guest runtime
    /// that panics on a failed write (Rust's println!) does not turn a chatty handler into a 500.
    /// </summary>
    [Theory]
    [InlineData("stdout")]
    [InlineData("stderr")]
    public void GivenAStdStreamPastItsCap_WhenTheComponentKeepsWriting_ThenEveryWriteSucceeds(string stream)
    {
        var streams = """
            (export "[method]output-stream.check-write" (func (param "self" (borrow $output-stream)) (result (result u64 (error $stream-error)))))
            (export "[method]output-stream.write" (func (param "self" (borrow $output-stream)) (param "contents" (list u8)) (result (result (error $stream-error)))))
            (export "[method]output-stream.blocking-write-and-flush" (func (param "self" (borrow $output-stream)) (param "contents" (list u8)) (result (result (error $stream-error)))))
            (export "[method]output-stream.write-zeroes" (func (param "self" (borrow $output-stream)) (param "len" u64) (result (result (error $stream-error)))))
            """;
        var component = Components.Probe(
            """
            (local.set $a (call $get))
            (call $write (local.get $a) (i32.const 0) (i32.const 70000) (i32.const 64))
            (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 501))))
            (call $check-write (local.get $a) (i32.const 64))
            (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 502))))
            (if (i64.eqz (i64.load (i32.const 72))) (then (br $answer (i32.const 503))))
            (call $write (local.get $a) (i32.const 0) (i32.const 100) (i32.const 64))
            (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 504))))
            (call $flush-write (local.get $a) (i32.const 0) (i32.const 100) (i32.const 64))
            (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 505))))
            (call $write-zeroes (local.get $a) (i64.const 100000) (i32.const 64))
            (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 506))))
            (i32.const 200)
            """,
            [
                ("get", $$"""(canon lower (func $std "get-{{stream}}"))""", "(result i32)"),
                ("check-write", """(canon lower (func $streams "[method]output-stream.check-write") (memory $mem))""", "(param i32 i32)"),
                ("write", """(canon lower (func $streams "[method]output-stream.write") (memory $mem))""", "(param i32 i32 i32 i32)"),
                ("flush-write", """(canon lower (func $streams "[method]output-stream.blocking-write-and-flush") (memory $mem))""", "(param i32 i32 i32 i32)"),
                ("write-zeroes", """(canon lower (func $streams "[method]output-stream.write-zeroes") (memory $mem))""", "(param i32 i64 i32)"),
            ],
            streams: streams,
            imports: $$"""(import "wasi:cli/{{stream}}@0.2.0" (instance $std (alias outer $probe $output-stream (type $os)) (export "output-stream" (type $o (eq $os))) (export "get-{{stream}}" (func (result (own $o))))))""");

        var response = HandleProbe(component);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(200);
    }

    /// <summary>
    /// A clock pollable due in under a millisecond: <c>poll</c> waits until it is ready and answers it (never an empty
    /// list), and after <c>block</c> it is ready. (A TimeSpan wait is whole milliseconds: 0.9 ms used to be no wait.)
    /// </summary>
    [Fact]
    public void GivenAPollableDueInUnderAMillisecond_WhenPolledOrBlockedOn_ThenItIsReadyAfterwards()
    {
        var component = Components.Probe(
            """
            (i32.store (i32.const 128) (call $subscribe (i64.const 900000)))
            (call $poll (i32.const 128) (i32.const 1) (i32.const 64))
            (if (i32.ne (i32.load (i32.const 68)) (i32.const 1)) (then (br $answer (i32.const 501))))
            (local.set $b (call $subscribe (i64.const 900000)))
            (call $block (local.get $b))
            (if (i32.eqz (call $ready (local.get $b))) (then (br $answer (i32.const 502))))
            (i32.const 200)
            """,
            [
                ("subscribe", """(canon lower (func $clock "subscribe-duration"))""", "(param i64) (result i32)"),
                ("poll", """(canon lower (func $poll "poll") (memory $mem) (realloc $realloc))""", "(param i32 i32 i32)"),
                ("block", """(canon lower (func $poll "[method]pollable.block"))""", "(param i32)"),
                ("ready", """(canon lower (func $poll "[method]pollable.ready"))""", "(param i32) (result i32)"),
            ],
            poll: """
                (export "[method]pollable.ready" (func (param "self" (borrow $pollable)) (result bool)))
                (export "[method]pollable.block" (func (param "self" (borrow $pollable))))
                (export "poll" (func (param "in" (list (borrow $pollable))) (result (list u32))))
                """,
            imports: Clock);

        var response = HandleProbe(component);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(200);
    }

    /// <summary>
    /// A handler blocked on a 10 s clock pollable when its request is ended (the task's time limit here): the request fails
    /// with the reason the runtime gives, as one that computes past the limit does. It failed as "The operation was
    /// canceled.".
    /// </summary>
    [Fact]
    public void GivenAHandlerBlockedOnAClock_WhenTheRequestIsEnded_ThenItFailsWithTheReason()
    {
        var component = Components.Probe(
            """
            (call $block (call $subscribe (i64.const 10000000000)))
            (i32.const 200)
            """,
            [
                ("subscribe", """(canon lower (func $clock "subscribe-duration"))""", "(param i64) (result i32)"),
                ("block", """(canon lower (func $poll "[method]pollable.block"))""", "(param i32)"),
            ],
            poll: """(export "[method]pollable.block" (func (param "self" (borrow $pollable))))""",
            imports: Clock);
        using var ended = new CancellationTokenSource();
        ended.Cancel();

        using var proxy = HttpProxyComponent.Create(WasmEngine.Shared.Engine, new ModuleCache(WasmEngine.Shared).GetOrCompileComponent(component));
        using var store = new Store(WasmEngine.Shared.Engine);
        store.Fuel = ulong.MaxValue;
        using var ticking = WasmEngine.Shared.Watch(store, () => { });
        var response = proxy.Handle(
            store,
            new HttpProxyRequest("GET", "/", "http", "localhost", [], []),
            new HttpProxyOptions([], [], 1 << 20, ended.Token, EndedReason: () => "the request exceeded the task's time limit of 0.3 s"));

        response.Error.ShouldNotBeNull().ShouldContain("the request exceeded the task's time limit of 0.3 s");
    }

    /// <summary>
    /// subscribe-duration with a duration past the end of the monotonic clock saturates to "never": the pollable is not
    /// ready (it used to wrap into the past and be ready at once).
    /// </summary>
    [Fact]
    public void GivenTheLongestDuration_WhenSubscribed_ThenThePollableIsNotReady()
    {
        var component = Components.Probe(
            """
            (if (call $ready (call $subscribe (i64.const -1))) (then (br $answer (i32.const 501))))
            (i32.const 200)
            """,
            [
                ("subscribe", """(canon lower (func $clock "subscribe-duration"))""", "(param i64) (result i32)"),
                ("ready", """(canon lower (func $poll "[method]pollable.ready"))""", "(param i32) (result i32)"),
            ],
            poll: """(export "[method]pollable.ready" (func (param "self" (borrow $pollable)) (result bool)))""",
            imports: Clock);

        HandleProbe(component).Status.ShouldBe(200);
    }

    /// <summary>
    /// fields refuses a value HTTP (RFC 9110) or Kestrel would not send, with header-error invalid-syntax at the call:
    /// controls, DEL and non-ASCII bytes (obs-text, UTF-8 such as "café", which Kestrel rejects in a response header);
    /// visible ASCII with spaces and tabs is accepted.
    /// </summary>
    [Theory]
    [InlineData("636166C3A9", false)] // "café" in UTF-8
    [InlineData("610162", false)] // a control (0x01)
    [InlineData("617F62", false)] // DEL
    [InlineData("E9", false)] // obs-text alone
    [InlineData("746578742F706C61696E3B20713D302E35092874616229", true)] // "text/plain; q=0.5<HTAB>(tab)"
    public void GivenAHeaderValue_WhenAppendedToFields_ThenOnlyOneHttpAllowsIsAccepted(string hex, bool accepted)
    {
        var value = Convert.FromHexString(hex);
        var stores = string.Concat(value.Select((b, i) => $"(i32.store8 (i32.const {1040 + i}) (i32.const {b}))"));
        var component = Components.Probe(
            $$"""
            (i32.store8 (i32.const 1024) (i32.const 120)) (i32.store8 (i32.const 1025) (i32.const 45)) (i32.store8 (i32.const 1026) (i32.const 97))
            {{stores}}
            (call $append (call $fields-new) (i32.const 1024) (i32.const 3) (i32.const 1040) (i32.const {{value.Length}}) (i32.const 64))
            (if (i32.eqz (i32.load8_u (i32.const 64))) (then (br $answer (i32.const 200))))
            (if (i32.load8_u (i32.const 65)) (then (br $answer (i32.const 500))))
            (i32.const 400)
            """,
            [("append", """(canon lower (func $types "[method]fields.append") (memory $mem))""", "(param i32 i32 i32 i32 i32 i32)")],
            types: """(export "[method]fields.append" (func (param "self" (borrow $fields)) (param "name" string) (param "value" (list u8)) (result (result (error $header-error)))))""");

        HandleProbe(component).Status.ShouldBe(accepted ? 200 : 400);
    }

    /// <summary>
    /// The request's resource table reuses the slot of a dropped handle: 1,000 fields created and dropped one after the
    /// other fit in a table of 100, while holding more than 100 at once is refused with a clear error.
    /// </summary>
    [Fact]
    public void GivenHandlesCreatedAndDropped_WhenManyMoreThanTheLimit_ThenTheirSlotsAreReusedAndOnlyLiveOnesCount()
    {
        (string, string, string)[] drop = [("drop-fields", "(canon resource.drop $fields)", "(param i32)")];
        var createAndDrop = Components.Probe(
            """
            (loop $again
              (call $drop-fields (call $fields-new))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
            (i32.const 200)
            """,
            drop);
        var hoard = Components.Probe(
            """
            (loop $again
              (drop (call $fields-new))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
            (i32.const 200)
            """,
            drop);

        var reused = HandleProbe(createAndDrop, resourceLimit: 100);
        reused.Error.ShouldBeNull();
        reused.Status.ShouldBe(200);
        HandleProbe(hoard, resourceLimit: 100).Error.ShouldNotBeNull().ShouldContain("the component holds more than 100 wasi:http resources at once");
    }

    /// <summary>
    /// <c>input-stream.subscribe</c>, <c>output-stream.subscribe</c> and <c>http-error-code</c> take a <c>borrow</c>
    /// handle: Wasmtime fails the call ("borrow handles still remain at the end of the call") unless the host function
    /// reads it. A pollable from each stream, dropped, and the error of a failed write asked for its error-code (none):
    /// the request answers 200.
    /// </summary>
    [Theory]
    [InlineData("output-stream")]
    [InlineData("input-stream")]
    [InlineData("http-error-code")]
    public void GivenABorrowedHandle_WhenSubscribeOrHttpErrorCodeIsCalled_ThenTheCallSucceeds(string probe)
    {
        (string, string, string)[] dropPollable = [("drop-pollable", "(canon resource.drop $pollable)", "(param i32)")];
        var component = probe switch
        {
            "output-stream" => Components.Probe(
                Respond + """
                (call $drop-pollable (call $subscribe (local.get $c)))
                (call $write (local.get $c) (i32.const 1024) (i32.const 4) (i32.const 96))
                (if (i32.load8_u (i32.const 96)) (then unreachable))
                """ + Finish,
                [.. BodyFunctions, .. dropPollable, ("subscribe", """(canon lower (func $streams "[method]output-stream.subscribe"))""", "(param i32) (result i32)")],
                streams: BodyStreams + """(export "[method]output-stream.subscribe" (func (param "self" (borrow $output-stream)) (result (own $pollable))))""",
                types: BodyTypes),
            "input-stream" => Components.Probe(
                """
                (call $drop-pollable (call $subscribe (call $get-stdin)))
                (i32.const 200)
                """,
                [.. dropPollable, ("get-stdin", """(canon lower (func $stdin "get-stdin"))""", "(result i32)"), ("subscribe", """(canon lower (func $streams "[method]input-stream.subscribe"))""", "(param i32) (result i32)")],
                streams: """(export "[method]input-stream.subscribe" (func (param "self" (borrow $input-stream)) (result (own $pollable))))""",
                imports: Stdin),
            _ => Components.Probe(
                """
                (local.set $a (call $response-new (call $fields-new)))
                (call $response-body (local.get $a) (i32.const 64))
                (local.set $b (i32.load (i32.const 68)))
                (call $body-write (local.get $b) (i32.const 64))
                (local.set $c (i32.load (i32.const 68)))
                (call $write-zeroes (local.get $c) (i64.const 2097152) (i32.const 96))
                (if (i32.eqz (i32.load8_u (i32.const 96))) (then (br $answer (i32.const 501))))
                (call $error-code (i32.load (i32.const 104)) (i32.const 128))
                (if (i32.load8_u (i32.const 128)) (then (br $answer (i32.const 502))))
                (i32.const 200)
                """,
                [.. BodyFunctions, ("error-code", """(canon lower (func $types "http-error-code") (memory $mem) (realloc $realloc))""", "(param i32 i32)")],
                streams: BodyStreams,
                types: BodyTypes + """
                    (alias outer $probe $io-error (type $io-error0))
                    (export "io-error" (type $io-error1 (eq $io-error0)))
                    (export "http-error-code" (func (param "err" (borrow $io-error1)) (result (option $error-code))))
                    """),
        };

        var response = HandleProbe(component);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(200);
    }

    /// <summary>
    /// A fields object holds at most 128 KiB of names and values (Wasmtime's DEFAULT_FIELD_SIZE_LIMIT, each field
    /// counting its bytes plus a fixed overhead, so empty values count too): appending 1,000-byte values in a loop traps
    /// at the limit, as Wasmtime's does, instead of growing the host's memory without end.
    /// </summary>
    [Fact]
    public void GivenFieldsAppendedInALoop_WhenTheyPassTheLimit_ThenTheRequestFailsClearly()
    {
        var component = Components.Probe(
            """
            (i32.store (i32.const 1024) (i32.const 0x612D78))
            (memory.fill (i32.const 2048) (i32.const 118) (i32.const 1000))
            (local.set $a (call $fields-new))
            (loop $again
              (call $append (local.get $a) (i32.const 1024) (i32.const 3) (i32.const 2048) (i32.const 1000) (i32.const 64))
              (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 501))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 10000))))
            (i32.const 200)
            """,
            [("append", """(canon lower (func $types "[method]fields.append") (memory $mem))""", "(param i32 i32 i32 i32 i32 i32)")],
            types: AppendType);

        HandleProbe(component).Error.ShouldNotBeNull().ShouldContain("the fields exceed their limit of 131072 bytes");
    }

    /// <summary>
    /// Responses made from a clone of 100 KB of fields and dropped, a hundred times: the request never holds more than
    /// two such fields at once, so it stays within the 4 MiB budget. A response's fields were counted until the end of the
    /// request, and the loop trapped at the budget.
    /// </summary>
    [Fact]
    public void GivenResponsesMadeAndDroppedInALoop_WhenTheirFieldsAddUpPastTheBudget_ThenTheirFieldsAreNoLongerCounted()
    {
        var component = Components.Probe(
            FillFields + """
            (loop $again
              (call $drop-response (call $response-new (call $clone (local.get $a))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 100))))
            (i32.const 200)
            """,
            [
                ("append", """(canon lower (func $types "[method]fields.append") (memory $mem))""", "(param i32 i32 i32 i32 i32 i32)"),
                ("clone", """(canon lower (func $types "[method]fields.clone"))""", "(param i32) (result i32)"),
                ("drop-response", "(canon resource.drop $outgoing-response)", "(param i32)"),
            ],
            types: AppendType + """(export "[method]fields.clone" (func (param "self" (borrow $fields)) (result (own $fields))))""",
            imports: """(alias export $types "outgoing-response" (type $outgoing-response))""");

        var response = HandleProbe(component);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(200);
    }

    /// <summary>
    /// Cloning copies a fields object, so one of nearly 128 KiB cloned in a loop (every clone held) would multiply it
    /// by the handle limit (65,536 × 128 KiB = 8 GiB): the fields a request holds at once count against a budget of
    /// 4 MiB, and the clone past it traps.
    /// </summary>
    [Fact]
    public void GivenLargeFieldsClonedInALoop_WhenTheClonesPassTheRequestsBudget_ThenTheRequestFailsClearly()
    {
        var component = Components.Probe(
            FillFields + """
            (loop $again
              (drop (call $clone (local.get $a)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
            (i32.const 200)
            """,
            [
                ("append", """(canon lower (func $types "[method]fields.append") (memory $mem))""", "(param i32 i32 i32 i32 i32 i32)"),
                ("clone", """(canon lower (func $types "[method]fields.clone"))""", "(param i32) (result i32)"),
            ],
            types: AppendType + """(export "[method]fields.clone" (func (param "self" (borrow $fields)) (result (own $fields))))""");

        HandleProbe(component).Error.ShouldNotBeNull().ShouldContain("the component holds more than 4194304 bytes of header fields at once");
    }

    /// <summary>
    /// Wasmtime's forbidden headers (DEFAULT_FORBIDDEN_HEADERS: connection, keep-alive, proxy-authenticate,
    /// proxy-authorization, proxy-connection, transfer-encoding, upgrade, host, http2-settings) are refused with
    /// header-error forbidden by append, set, delete and from-list, whatever their case.
    /// </summary>
    [Theory]
    [InlineData("append", "proxy-connection")]
    [InlineData("append", "Transfer-Encoding")]
    [InlineData("set", "host")]
    [InlineData("delete", "upgrade")]
    [InlineData("from-list", "keep-alive")]
    [InlineData("append", "x-allowed")]
    public void GivenAForbiddenHeaderName_WhenAddedToFields_ThenItIsRefusedAsForbidden(string function, string name)
    {
        var stores = string.Concat(name.Select((ch, i) => $"(i32.store8 (i32.const {1024 + i}) (i32.const {(int)ch}))"));
        var (call, lowered, type) = function switch
        {
            "append" => (
                $"(call $f (call $fields-new) (i32.const 1024) (i32.const {name.Length}) (i32.const 1100) (i32.const 1) (i32.const 64))",
                "(param i32 i32 i32 i32 i32 i32)",
                """(export "[method]fields.append" (func (param "self" (borrow $fields)) (param "name" string) (param "value" (list u8)) (result (result (error $header-error)))))"""),
            "set" => (
                $"(i32.store (i32.const 1200) (i32.const 1100)) (i32.store (i32.const 1204) (i32.const 1)) (call $f (call $fields-new) (i32.const 1024) (i32.const {name.Length}) (i32.const 1200) (i32.const 1) (i32.const 64))",
                "(param i32 i32 i32 i32 i32 i32)",
                """(export "[method]fields.set" (func (param "self" (borrow $fields)) (param "name" string) (param "value" (list (list u8))) (result (result (error $header-error)))))"""),
            "delete" => (
                $"(call $f (call $fields-new) (i32.const 1024) (i32.const {name.Length}) (i32.const 64))",
                "(param i32 i32 i32 i32)",
                """(export "[method]fields.delete" (func (param "self" (borrow $fields)) (param "name" string) (result (result (error $header-error)))))"""),
            _ => (
                $"(i32.store (i32.const 1200) (i32.const 1024)) (i32.store (i32.const 1204) (i32.const {name.Length})) (i32.store (i32.const 1208) (i32.const 1100)) (i32.store (i32.const 1212) (i32.const 1)) (call $f (i32.const 1200) (i32.const 1) (i32.const 60))",
                "(param i32 i32 i32)",
                """(export "[static]fields.from-list" (func (param "entries" (list (tuple string (list u8)))) (result (result (own $fields) (error $header-error)))))"""),
        };
        var component = Components.Probe(
            $$"""
            {{stores}}
            (i32.store8 (i32.const 1100) (i32.const 120))
            {{call}}
            (if (i32.eqz (i32.load8_u (i32.const {{(function == "from-list" ? 60 : 64)}}))) (then (br $answer (i32.const 200))))
            (if (i32.eq (i32.load8_u (i32.const {{(function == "from-list" ? 64 : 65)}})) (i32.const 1)) (then (br $answer (i32.const 403))))
            (i32.const 500)
            """,
            [("f", $$"""(canon lower (func $types "[{{(function == "from-list" ? "static" : "method")}}]fields.{{function}}") (memory $mem))""", lowered)],
            types: type);

        HandleProbe(component).Status.ShouldBe(name.StartsWith("x-", StringComparison.Ordinal) ? 200 : 403);
    }

    /// <summary>
    /// The request's headers reach the guest without the forbidden ones, as Wasmtime's incoming request strips them
    /// (FieldMap::new_immutable): a Connection or Host header sent by the client is not among them, x-echo is.
    /// </summary>
    [Fact]
    public void GivenARequestWithForbiddenHeaders_WhenTheComponentReadsItsHeaders_ThenTheyAreNotThere()
    {
        string Has(string name) =>
            string.Concat(name.Select((ch, i) => $"(i32.store8 (i32.const {1024 + i}) (i32.const {(int)ch}))"))
            + $"(call $has (local.get $a) (i32.const 1024) (i32.const {name.Length}))";
        var component = Components.Probe(
            $$"""
            (local.set $a (call $headers (local.get $request)))
            (if {{Has("connection")}} (then (br $answer (i32.const 501))))
            (if {{Has("HOST")}} (then (br $answer (i32.const 502))))
            (if (i32.eqz {{Has("x-echo")}}) (then (br $answer (i32.const 503))))
            (i32.const 200)
            """,
            [
                ("headers", """(canon lower (func $types "[method]incoming-request.headers"))""", "(param i32) (result i32)"),
                ("has", """(canon lower (func $types "[method]fields.has") (memory $mem))""", "(param i32 i32 i32) (result i32)"),
            ],
            types: """
                (export "[method]incoming-request.headers" (func (param "self" (borrow $incoming-request)) (result (own $fields))))
                (export "[method]fields.has" (func (param "self" (borrow $fields)) (param "name" string) (result bool)))
                """);

        HandleProbe(component, headers: [new("Connection", "close"u8.ToArray()), new("Host", "example.org"u8.ToArray()), new("X-Echo", "a"u8.ToArray())])
            .Status.ShouldBe(200);
    }

    /// <summary>
    /// wasi:io: after last-operation-failed the stream is closed. "write A; write past the body limit (its error
    /// ignored); write C; finish" used to answer 200 with A and C, a body with a hole; the write after the failure now
    /// gets closed and the request fails with the limit's error.
    /// </summary>
    [Fact]
    public void GivenAWriteThatFailedOnTheBodyLimit_WhenTheComponentWritesOnAndFinishes_ThenTheRequestFails()
    {
        var component = Components.Probe(
            Respond + """
            (call $write (local.get $c) (i32.const 1024) (i32.const 4) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            (call $write (local.get $c) (i32.const 1024) (i32.const 16) (i32.const 96))
            (if (i32.eqz (i32.load8_u (i32.const 96))) (then unreachable))
            (call $write (local.get $c) (i32.const 1032) (i32.const 2) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then (if (i32.ne (i32.load8_u (i32.const 100)) (i32.const 1)) (then unreachable))))
            """ + Finish,
            BodyFunctions,
            streams: BodyStreams,
            types: BodyTypes);

        var response = HandleProbe(component, bodyLimit: 8);

        response.Error.ShouldNotBeNull().ShouldContain("the response body exceeds its limit of 8 bytes");
    }

    /// <summary>
    /// A body of exactly the limit: check-write after the last write and its flush (as wasi:io's blocking-flush is
    /// specified: flush, block, check-write for errors) reports room, not last-operation-failed, since nothing failed;
    /// only the write that would cross the limit fails. The body arrives whole.
    /// </summary>
    [Fact]
    public void GivenABodyOfExactlyTheLimit_WhenTheComponentChecksWriteAfterItsFlush_ThenNothingFails()
    {
        var component = Components.Probe(
            Respond + """
            (call $write (local.get $c) (i32.const 1024) (i32.const 4) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            (call $write (local.get $c) (i32.const 1024) (i32.const 4) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            (call $flush (local.get $c) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            (call $check-write (local.get $c) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            """ + Finish,
            [
                .. BodyFunctions,
                ("flush", """(canon lower (func $streams "[method]output-stream.blocking-flush") (memory $mem))""", "(param i32 i32)"),
                ("check-write", """(canon lower (func $streams "[method]output-stream.check-write") (memory $mem))""", "(param i32 i32)"),
            ],
            streams: BodyStreams + """
                (export "[method]output-stream.blocking-flush" (func (param "self" (borrow $output-stream)) (result (result (error $stream-error)))))
                (export "[method]output-stream.check-write" (func (param "self" (borrow $output-stream)) (result (result u64 (error $stream-error)))))
                """,
            types: BodyTypes);

        var response = HandleProbe(component, bodyLimit: 8);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(200);
        Encoding.ASCII.GetString(response.Body).ShouldBe("AAAAAAAA");
    }

    /// <summary>
    /// outgoing-body.finish declares the body complete: a write to its stream afterwards gets closed (as Wasmtime's
    /// finish closes the stream) and its bytes do not join the body.
    /// </summary>
    [Fact]
    public void GivenAFinishedBody_WhenTheComponentWritesToItsStream_ThenTheWriteIsClosedAndTheBodyUnchanged()
    {
        var component = Components.Probe(
            Respond + """
            (call $write (local.get $c) (i32.const 1024) (i32.const 4) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            (call $finish (local.get $b) (i32.const 0) (i32.const 0) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then unreachable))
            (call $write (local.get $c) (i32.const 1032) (i32.const 2) (i32.const 96))
            (if (i32.load8_u (i32.const 96)) (then (if (i32.ne (i32.load8_u (i32.const 100)) (i32.const 1)) (then unreachable))))
            (call $drop-output (local.get $c))
            (return)
            """,
            BodyFunctions,
            streams: BodyStreams,
            types: BodyTypes);

        var response = HandleProbe(component);

        response.Error.ShouldBeNull();
        Encoding.ASCII.GetString(response.Body).ShouldBe("AAAA");
    }

    /// <summary>Probe code that fills a new fields object <c>$a</c> with 100 headers <c>a-x</c> of 1,000 bytes (about 100
    /// KB), then zeroes <c>$i</c>.</summary>
    private const string FillFields = """
        (i32.store (i32.const 1024) (i32.const 0x612D78))
        (memory.fill (i32.const 2048) (i32.const 118) (i32.const 1000))
        (local.set $a (call $fields-new))
        (loop $fill
          (call $append (local.get $a) (i32.const 1024) (i32.const 3) (i32.const 2048) (i32.const 1000) (i32.const 64))
          (if (i32.load8_u (i32.const 64)) (then (br $answer (i32.const 501))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $fill (i32.lt_u (local.get $i) (i32.const 100))))
        (local.set $i (i32.const 0))

        """;

    private const string AppendType = """(export "[method]fields.append" (func (param "self" (borrow $fields)) (param "name" string) (param "value" (list u8)) (result (result (error $header-error)))))""";

    private const string Stdin = """(import "wasi:cli/stdin@0.2.0" (instance $stdin (alias outer $probe $input-stream (type $is)) (export "input-stream" (type $i (eq $is))) (export "get-stdin" (func (result (own $i))))))""";

    /// <summary>Core wasm for a probe that answers itself with a body: an ok response $a (status 200) is set, its body is
    /// $b, the body's output stream $c; "AAAA" is at 1024, "CC" at 1032 (see <see cref="BodyFunctions"/>).</summary>
    private const string Respond = """
        (i32.store (i32.const 1024) (i32.const 0x41414141))
        (i32.store16 (i32.const 1032) (i32.const 0x4343))
        (local.set $a (call $response-new (call $fields-new)))
        (call $response-body (local.get $a) (i32.const 64))
        (if (i32.load8_u (i32.const 64)) (then unreachable))
        (local.set $b (i32.load (i32.const 68)))
        (call $body-write (local.get $b) (i32.const 64))
        (if (i32.load8_u (i32.const 64)) (then unreachable))
        (local.set $c (i32.load (i32.const 68)))
        (call $outparam-set (local.get $outparam) (i32.const 0) (local.get $a) (i32.const 0) (i32.const 0) (i32.const 0))

        """;

    /// <summary>Core wasm ending a <see cref="Respond"/> probe: the stream dropped, the body finished, handle returns.</summary>
    private const string Finish = """

        (call $drop-output (local.get $c))
        (call $finish (local.get $b) (i32.const 0) (i32.const 0) (i32.const 96))
        (if (i32.load8_u (i32.const 96)) (then unreachable))
        (return)
        """;

    private const string BodyStreams = """
        (export "[method]output-stream.write" (func (param "self" (borrow $output-stream)) (param "contents" (list u8)) (result (result (error $stream-error)))))
        (export "[method]output-stream.write-zeroes" (func (param "self" (borrow $output-stream)) (param "len" u64) (result (result (error $stream-error)))))

        """;

    private const string BodyTypes = """
        (export "[method]outgoing-response.body" (func (param "self" (borrow $outgoing-response)) (result (result (own $outgoing-body)))))
        (export "[method]outgoing-body.write" (func (param "self" (borrow $outgoing-body)) (result (result (own $output-stream)))))
        (export "[static]outgoing-body.finish" (func (param "this" (own $outgoing-body)) (param "trailers" (option (own $fields))) (result (result (error $error-code)))))

        """;

    private static readonly (string Name, string Lower, string CoreType)[] BodyFunctions =
    [
        ("response-body", """(canon lower (func $types "[method]outgoing-response.body") (memory $mem))""", "(param i32 i32)"),
        ("body-write", """(canon lower (func $types "[method]outgoing-body.write") (memory $mem))""", "(param i32 i32)"),
        ("finish", """(canon lower (func $types "[static]outgoing-body.finish") (memory $mem) (realloc $realloc))""", "(param i32 i32 i32 i32)"),
        ("write", """(canon lower (func $streams "[method]output-stream.write") (memory $mem))""", "(param i32 i32 i32 i32)"),
        ("write-zeroes", """(canon lower (func $streams "[method]output-stream.write-zeroes") (memory $mem))""", "(param i32 i64 i32)"),
        ("drop-output", "(canon resource.drop $output-stream)", "(param i32)"),
    ];

    private const string Clock = """(import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock (alias outer $probe $pollable (type $p0)) (export "pollable" (type $p (eq $p0))) (export "subscribe-duration" (func (param "when" u64) (result (own $p))))))""";

    private HttpProxyResponse Handle(string method, string path, string body, KeyValuePair<string, byte[]>[]? headers = null, ulong fuel = ulong.MaxValue) =>
        Handle(_proxy, new HttpProxyRequest(method, path, "http", "localhost", headers ?? [], Encoding.UTF8.GetBytes(body)), fuel);

    /// <summary>A probe component (<see cref="Components.Probe"/>) handling a GET of /.</summary>
    private static HttpProxyResponse HandleProbe(
        byte[] component, int resourceLimit = HttpProxyOptions.DefaultResourceLimit, int bodyLimit = 1 << 20, KeyValuePair<string, byte[]>[]? headers = null)
    {
        using var proxy = HttpProxyComponent.Create(WasmEngine.Shared.Engine, new ModuleCache(WasmEngine.Shared).GetOrCompileComponent(component));
        return Handle(proxy, new HttpProxyRequest("GET", "/", "http", "localhost", headers ?? [], []), ulong.MaxValue, resourceLimit, bodyLimit);
    }

    private static HttpProxyResponse Handle(
        HttpProxyComponent proxy, HttpProxyRequest request, ulong fuel, int resourceLimit = HttpProxyOptions.DefaultResourceLimit, int bodyLimit = 1 << 20)
    {
        using var store = new Store(WasmEngine.Shared.Engine);
        store.Fuel = fuel;
        using var ticking = WasmEngine.Shared.Watch(store, () => { });
        return proxy.Handle(store, request, new HttpProxyOptions([], [], bodyLimit, CancellationToken.None, resourceLimit));
    }
}
