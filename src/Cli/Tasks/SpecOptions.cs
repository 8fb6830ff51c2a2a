using System.CommandLine;
using System.Globalization;
using System.CommandLine.Parsing;
using System.Text.Json;
using Propeller.Contracts;
using Propeller.Contracts.Tasks;

namespace Propeller.Cli.Tasks;

/// <summary>The options that describe a task to create (shared by <c>task create</c> and <c>task run</c>).</summary>
internal sealed class SpecOptions
{
    private readonly Option<FileInfo?>? _file;
    private readonly Option<string?> _imageUrl = new("--image-url") { Description = "An OCI image holding the module (instead of a file)" };
    private readonly Option<string?> _inputs = new("--inputs", "-i") { Description = "The function's arguments, comma-separated (e.g. 10,32)" };
    private readonly Option<string[]> _env = new("--env", "-e") { Description = "An environment variable for WASI programs, KEY=VALUE (repeatable)", AllowMultipleArgumentsPerToken = false };
    private readonly Option<string[]> _cliArgs = new("--cli-arg") { Description = "An argument for the runtime (repeatable)" };
    private readonly Option<string?> _metadata = new("--metadata", "-m") { Description = "Metadata, a JSON object (e.g. '{\"team\":\"edge\"}')" };
    private readonly Option<bool> _daemon = new("--daemon") { Description = "Run as a daemon (the proplet keeps it running)" };

    public SpecOptions(bool withFile = true)
    {
        // Empty, it counted as the module's source: `task run --image-url ""` created a task without any and waited.
        _imageUrl.Validators.Add(TaskCommands.RefuseEmpty("--image-url"));
        if (withFile)
        {
            _file = new Option<FileInfo?>("--file") { Description = "The WebAssembly module (.wasm), sent inline" };
        }
    }

    /// <summary>Where the module comes from when it is not a file: an OCI image (through the proxy) or an http(s) URL.</summary>
    public Option<string?> ImageUrl => _imageUrl;

    public void AddTo(Command command)
    {
        if (_file is not null)
        {
            command.Options.Add(_file);
            command.Validators.Add(result =>
            {
                // Both would create a task the proplet runs from the file, never asking for the image.
                // From the results: GetValue of a file the parser could not make ("") throws in a validator.
                if (result.GetResult(_file) is not null && result.GetResult(_imageUrl) is not null)
                {
                    result.AddError("--file and --image-url cannot be used together: the module comes from one of them");
                }
            });
        }

        foreach (var option in new Option[] { _imageUrl, _inputs, _env, _cliArgs, _metadata, _daemon })
        {
            command.Options.Add(option);
        }
    }

    public TaskJson Body(ParseResult parse, string name)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in parse.GetValue(_env) ?? [])
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq < 1)
            {
                throw new CliException($"--env expects KEY=VALUE, got '{pair}'", CliException.Usage);
            }

            env[pair[..eq]] = pair[(eq + 1)..];
        }

        JsonElement? metadata = null;
        if (parse.GetValue(_metadata) is { } text)
        {
            metadata = MetadataError(text) is { } error ? throw new CliException(error, CliException.Usage) : JsonDocument.Parse(text).RootElement.Clone();
        }

        var cliArgs = parse.GetValue(_cliArgs);
        return new TaskJson
        {
            Name = name,
            File = _file is not null && parse.GetValue(_file) is { } file ? ReadWasm(file) : null,
            ImageUrl = parse.GetValue(_imageUrl),
            Inputs = parse.GetValue(_inputs) is { Length: > 0 } inputs ? Inputs(inputs) : null,
            Env = env.Count == 0 ? null : env,
            CliArgs = cliArgs is { Length: > 0 } ? cliArgs : null,
            Metadata = metadata,
            Daemon = parse.GetValue(_daemon),
        };
    }

    /// <summary>The comma-separated <c>--inputs</c>; an empty one (<c>10,,32</c>, <c>10,</c>) is a mistake no function's
    /// parameter takes, refused here rather than sent as "".</summary>
    private static string[] Inputs(string text)
    {
        var inputs = text.Split(',', StringSplitOptions.TrimEntries);
        return inputs.Contains("")
            ? throw new CliException($"--inputs has an empty value in '{text}': separate the values with single commas (e.g. -i 10,32)", CliException.Usage)
            : inputs;
    }

    /// <summary>Why <paramref name="text"/> is not a <c>--metadata</c> value (a JSON object), or null when it is one.</summary>
    public static string? MetadataError(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind == JsonValueKind.Object ? null : "--metadata must be a JSON object";
        }
        catch (JsonException ex)
        {
            return $"--metadata is not JSON: {ex.Message}";
        }
    }

    /// <summary>The largest request body the manager reads (src/Manager/ManagerApp.cs: the original's 100 MiB).</summary>
    public const long MaxRequestBytes = 100L * 1024 * 1024;

    /// <summary>The module's bytes as base64, after checking it is one (<c>\0asm</c>), so a wrong file fails here.</summary>
    public static string ReadWasm(FileInfo file)
    {
        byte[] bytes;
        try
        {
            file.Refresh();
            if (file.Exists && (file.Length + 2) / 3 * 4 > MaxRequestBytes)
            {
                // Sent over the limit, the manager answers 413 and closes the connection while the body is still being
                // written: the CLI saw "cannot reach the manager ... Error while copying content to a stream" (exit 3).
                throw new CliException(
                    string.Create(CultureInfo.InvariantCulture, $"{file.FullName} is too large: {file.Length / (1024.0 * 1024):0.#} MiB, as base64 over the manager's request limit of {MaxRequestBytes / (1024 * 1024)} MiB (a module of at most {MaxRequestBytes / 4 * 3 / (1024 * 1024)} MiB fits)"),
                    CliException.Usage);
            }

            bytes = File.ReadAllBytes(file.FullName);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot read {file.FullName}: {ex.Message}", CliException.Usage);
        }

        if (bytes.Length < 8 || !bytes.AsSpan(0, 4).SequenceEqual("\0asm"u8))
        {
            throw new CliException($"{file.FullName} is not a WebAssembly module (it must start with \\0asm)", CliException.Usage);
        }

        return Convert.ToBase64String(bytes);
    }

    /// <summary>
    /// The longest duration taken: a wait is a timer, and timers stop at about 49 days (CancelAfter throws past it, after
    /// the task was created and started); 1000h is a round number below it.
    /// </summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromHours(1000);

    /// <summary>A duration like the manager's: 500ms, 30s, 5m, 1h30m (up to <see cref="MaxDuration"/>).</summary>
    public static TimeSpan ParseDuration(ArgumentResult result) =>
        ParseDuration(result.Tokens.Count > 0 ? result.Tokens[0].Value : "", result.AddError);

    /// <summary>Parses <paramref name="text"/>, or reports why it is not a duration to <paramref name="error"/>.</summary>
    public static TimeSpan ParseDuration(string text, Action<string> error)
    {
        if (!GoDuration.TryParse(text, out var duration) || duration <= TimeSpan.Zero)
        {
            error($"'{text}' is not a duration (e.g. 500ms, 30s, 5m, 1h30m)");
            return default;
        }

        if (duration > MaxDuration)
        {
            error($"'{text}' is too long (at most {FormatDuration(MaxDuration)})");
            return default;
        }

        return duration;
    }

    /// <summary>A duration as it is typed: 500ms, 30s, 1m30s, 1000h.</summary>
    public static string FormatDuration(TimeSpan duration)
    {
        if (duration < TimeSpan.FromSeconds(1))
        {
            return ((long)duration.TotalMilliseconds).ToString(CultureInfo.InvariantCulture) + "ms";
        }

        var text = (duration.Hours + (duration.Days * 24) is var h and > 0 ? h.ToString(CultureInfo.InvariantCulture) + "h" : "")
            + (duration.Minutes > 0 ? duration.Minutes.ToString(CultureInfo.InvariantCulture) + "m" : "");
        var seconds = duration.Seconds + (duration.Milliseconds / 1000.0);
        return seconds > 0 || text.Length == 0 ? text + seconds.ToString("0.###", CultureInfo.InvariantCulture) + "s" : text;
    }
}
