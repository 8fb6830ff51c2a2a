namespace Propeller.Wasm.Wasi;

/// <summary>
/// What a WASI program sees: argv, environment, preopened directories and standard streams. Build one per instance
/// and pass it to <see cref="WasiContext"/>; nothing is shared between contexts.
/// </summary>
public sealed class WasiConfiguration
{
    private readonly List<string> _args = [];
    private readonly List<KeyValuePair<string, string>> _env = [];
    private readonly List<(string Host, string Guest)> _preopens = [];

    public IReadOnlyList<string> Args => _args;

    public IReadOnlyList<KeyValuePair<string, string>> Environment => _env;

    public IReadOnlyList<(string Host, string Guest)> Preopens => _preopens;

    /// <summary>Standard input (empty when null).</summary>
    public Stream? StandardInput { get; private set; }

    /// <summary>Where fd 1 goes (discarded when null). <see cref="WasiOutputBuffer"/> captures with a byte cap.</summary>
    public Stream? StandardOutput { get; private set; }

    /// <summary>Where fd 2 goes (discarded when null).</summary>
    public Stream? StandardError { get; private set; }

    /// <summary>argv, program name first.</summary>
    public WasiConfiguration WithArgs(params IEnumerable<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        _args.AddRange(args);
        return this;
    }

    public WasiConfiguration WithEnvironmentVariable(string name, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(value);
        if (name.Contains('=', StringComparison.Ordinal))
        {
            throw new ArgumentException("an environment variable name cannot contain '='", nameof(name));
        }

        _env.Add(new(name, value));
        return this;
    }

    /// <summary>
    /// Makes <paramref name="hostPath"/> visible to the guest as <paramref name="guestPath"/>. Path resolution inside it can
    /// never leave it: `..` above its root, absolute paths and symlinks pointing outside are refused.
    /// </summary>
    public WasiConfiguration WithPreopenedDirectory(string hostPath, string guestPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(hostPath);
        ArgumentException.ThrowIfNullOrEmpty(guestPath);
        var full = Path.GetFullPath(hostPath);
        if (!Directory.Exists(full))
        {
            throw new DirectoryNotFoundException($"preopened directory {hostPath} does not exist");
        }

        _preopens.Add((full, guestPath));
        return this;
    }

    public WasiConfiguration WithStandardInput(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        StandardInput = new MemoryStream(bytes, writable: false);
        return this;
    }

    public WasiConfiguration WithStandardInput(Stream stream)
    {
        StandardInput = stream;
        return this;
    }

    public WasiConfiguration WithStandardOutput(Stream stream)
    {
        StandardOutput = stream;
        return this;
    }

    public WasiConfiguration WithStandardError(Stream stream)
    {
        StandardError = stream;
        return this;
    }
}
