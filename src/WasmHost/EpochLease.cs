namespace Propeller.WasmHost;

/// <summary>
/// Keeps a <see cref="WasmEngine"/>'s epoch ticker ticking while held (<see cref="WasmEngine.Watch"/>,
/// <see cref="WasmEngine.KeepTicking"/>). Disposing it twice releases it once, so a double dispose cannot stop the
/// ticker under another holder's guest.
/// </summary>
public sealed class EpochLease : IDisposable
{
    /// <summary>The lease of an engine without epochs: nothing to keep ticking.</summary>
    internal static readonly EpochLease None = new(null);

    private WasmEngine? _engine;

    internal EpochLease(WasmEngine? engine) => _engine = engine;

    public void Dispose() => Interlocked.Exchange(ref _engine, null)?.Release();
}
