using System.Text;

namespace Propeller.Tests.Shared;

/// <summary>
/// Test components from the component text in tests/Shared/Components, assembled at test time by Wasmtime's own text
/// parser (<c>Module.ConvertText</c> reads the component model too; wabt's wat2wasm does not), so building them needs no
/// tool beyond the runtime under test (ADR 0011).
/// </summary>
internal static class Components
{
    private static readonly Lazy<byte[]> s_calculator = new(() => Assemble("calculator.wat", text => text));

    /// <summary>calculator.wat: custom exports of every WAVE type, <c>propeller:test/greeter@0.1.0#greet</c>, a trap and a spin.</summary>
    public static byte[] Calculator => s_calculator.Value;

    /// <summary>
    /// command.wat: a wasi:cli/run command writing <paramref name="stdout"/> and <paramref name="stderr"/>
    /// <paramref name="repeat"/> times, then running <paramref name="runBody"/> (core wasm leaving the run's i32: 0 ok, 1 err).
    /// </summary>
    public static byte[] Command(string stdout = "", string stderr = "", string runBody = "(i32.const 0)", int repeat = 1) =>
        Assemble("command.wat", text => text
            .Replace("STDOUT_TEXT", Escape(stdout), StringComparison.Ordinal)
            .Replace("STDERR_TEXT", Escape(stderr), StringComparison.Ordinal)
            .Replace("STDOUT_LENGTH", Encoding.UTF8.GetByteCount(stdout).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("STDERR_LENGTH", Encoding.UTF8.GetByteCount(stderr).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("REPEAT", repeat.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("RUN_BODY", runBody, StringComparison.Ordinal));

    /// <summary>The <c>task-info</c> record of <c>propeller:proplet-plugin</c> in component text, defined and exported as
    /// <c>$task-info</c>, for one-off plugin components (<see cref="FromText"/>).</summary>
    public const string TaskInfo = """
        (type $task-info-def (record
          (field "id" string) (field "name" string) (field "image-url" string) (field "cli-args" (list string))
          (field "env" (list (tuple string string))) (field "daemon" bool) (field "encrypted" bool)))
        (export $task-info "task-info" (type $task-info-def))
        """;

    /// <summary>plugin.wat: a <c>propeller:proplet-plugin</c> component running <paramref name="authorize"/> at the start of
    /// authorize and <paramref name="complete"/> in on-task-complete (core wasm: a trap or a spin).</summary>
    public static byte[] Plugin(string authorize = "", string complete = "") =>
        Assemble("plugin.wat", text => text
            .Replace("AUTHORIZE_PRELUDE", authorize, StringComparison.Ordinal)
            .Replace("COMPLETE_BODY", complete, StringComparison.Ordinal));

    /// <summary>proxy.wat: a wasi:http/incoming-handler@0.2.0 component (spec §2.11).</summary>
    public static byte[] Proxy => Assemble("proxy.wat", text => text);

    /// <summary>
    /// probe.wat: a wasi:http/incoming-handler whose handle runs <paramref name="body"/> (core wasm in a block
    /// <c>$answer</c> leaving an i32, the response's status) with the probed imports: functions added to the imported
    /// wasi:io/poll (<paramref name="poll"/>), wasi:io/streams (<paramref name="streams"/>) and wasi:http/types
    /// (<paramref name="types"/>) instances, whole imported instances (<paramref name="imports"/>), and each of
    /// <paramref name="lowered"/> lowered as the handler's core import <c>$Name</c> (Lower is the <c>canon lower</c>'s
    /// text, CoreType its core function type). The body has i32 locals $a $b $c $i and an i64 $x.
    /// </summary>
    public static byte[] Probe(
        string body,
        (string Name, string Lower, string CoreType)[] lowered,
        string poll = "",
        string streams = "",
        string types = "",
        string imports = "") =>
        Assemble("probe.wat", text => text
            .Replace("PROBE_POLL", poll, StringComparison.Ordinal)
            .Replace("PROBE_STREAMS", streams, StringComparison.Ordinal)
            .Replace("PROBE_TYPES", types, StringComparison.Ordinal)
            .Replace("PROBE_IMPORTS", imports, StringComparison.Ordinal)
            .Replace("PROBE_LOWERED", string.Concat(lowered.Select(f => $"(core func ${f.Name}-core {f.Lower})\n")), StringComparison.Ordinal)
            .Replace("PROBE_CORE_IMPORTS", string.Concat(lowered.Select(f => $"(import \"host\" \"{f.Name}\" (func ${f.Name} {f.CoreType}))\n")), StringComparison.Ordinal)
            .Replace("PROBE_CORE_EXPORTS", string.Concat(lowered.Select(f => $"(export \"{f.Name}\" (func ${f.Name}-core))\n")), StringComparison.Ordinal)
            .Replace("PROBE_BODY", body, StringComparison.Ordinal));

    /// <summary>
    /// <paramref name="binary"/> (a module or a component) with a custom section of <paramref name="bytes"/> zero bytes
    /// appended: the same code, a larger file (a module the manager's task view holds by reference, ADR 0018).
    /// </summary>
    public static byte[] Padded(byte[] binary, int bytes)
    {
        ArgumentNullException.ThrowIfNull(binary);
        var name = "propeller-padding"u8.ToArray();
        var content = new List<byte>();
        content.AddRange(Leb128((uint)name.Length));
        content.AddRange(name);
        content.AddRange(new byte[bytes]);
        return [.. binary, 0, .. Leb128((uint)content.Count), .. content];
    }

    private static IEnumerable<byte> Leb128(uint value)
    {
        do
        {
            var b = (byte)(value & 0x7f);
            value >>= 7;
            yield return value == 0 ? b : (byte)(b | 0x80);
        }
        while (value != 0);
    }

    /// <summary>Any component text (for one-off components such as one with an import nobody provides).</summary>
    public static byte[] FromText(string text) => Wasmtime.Module.ConvertText(text);

    private static byte[] Assemble(string file, Func<string, string> edit) =>
        Wasmtime.Module.ConvertText(edit(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Components", file))));

    /// <summary>Text as the body of a wat string literal: every byte as \hh.</summary>
    private static string Escape(string text) =>
        string.Concat(Encoding.UTF8.GetBytes(text).Select(b => $"\\{b:x2}"));
}
