using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;

namespace Propeller.Bench.Support;

/// <summary>
/// Which methods the JIT compiles in a benchmark's measured window (the runtime's MethodLoadVerbose events), for finding
/// what keeps the JIT busy in a long-running process: set PROPELLER_BENCH_JIT_LOG=N and the benchmark prints the N
/// namespaces with the most methods compiled in the window, with a sample of names, and how many were dynamic methods
/// (LCG: expression trees, emitted IL). Off by default: listening costs a little.
/// </summary>
internal sealed class JitLog : EventListener
{
    private const EventKeywords JitKeyword = (EventKeywords)0x10;
    private readonly ConcurrentDictionary<string, (int Count, string Sample)> _byNamespace = new(StringComparer.Ordinal);
    private volatile bool _recording;

    /// <summary>A listener when PROPELLER_BENCH_JIT_LOG is set, else null.</summary>
    public static JitLog? FromEnvironment() =>
        int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_BENCH_JIT_LOG"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var top) && top > 0 ? new JitLog(top) : null;

    private JitLog(int top) => Top = top;

    public int Top { get; }

    public void Start() => _recording = true;

    public void Stop() => _recording = false;

    /// <summary>The namespaces with the most methods compiled while recording, one line each.</summary>
    public IEnumerable<string> Report() =>
        _byNamespace.OrderByDescending(p => p.Value.Count).Take(Top)
            .Select(p => string.Create(CultureInfo.InvariantCulture, $"# jit {p.Value.Count,6} {p.Key}  e.g. {p.Value.Sample}"));

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Verbose, JitKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (!_recording || eventData.EventName is not { } name || !name.StartsWith("MethodLoadVerbose", StringComparison.Ordinal) || eventData.PayloadNames is null)
        {
            return;
        }

        var ns = Payload(eventData, "MethodNamespace");
        var method = Payload(eventData, "MethodName");
        var key = ns.Length > 120 ? ns[..120] : ns;
        _byNamespace.AddOrUpdate(key, _ => (1, method), (_, v) => (v.Count + 1, v.Sample));
    }

    private static string Payload(EventWrittenEventArgs e, string field)
    {
        var i = e.PayloadNames!.IndexOf(field);
        return i >= 0 && e.Payload![i] is string s ? s : "";
    }
}
