using System.Text.Json;
using Propeller.Contracts.Json;
using Propeller.Contracts.Mqtt;

namespace Propeller.Edge.Tasks;

/// <summary>
/// Decodes and validates a start command (spec §2.1 steps 1–3). Unlike the original, which only logged a bad request,
/// a request with a usable id targeted at this proplet gets an error result, so the manager does not wait forever.
/// </summary>
public static class StartRequestParser
{
    public static StartParse Parse(ReadOnlySpan<byte> payload, string myId, TaskLimits defaults)
    {
        StartMessage? message;
        try
        {
            message = JsonSerializer.Deserialize<StartMessage>(payload);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Salvage (InvalidOperationException: a string that is not valid UTF-8) id and targeting so the failure can be reported to the manager.
            var salvaged = Salvage(payload);
            return salvaged.TargetedElsewhere(myId)
                ? StartParse.NotForMe
                : new StartParse(null, salvaged.Id, $"invalid start request: {JsonProblem.Describe(ex, typeof(StartMessage), JsonSerializerOptions.Default)}", salvaged.Attempt, salvaged.Dispatch);
        }

        if (message is null)
        {
            return new StartParse(null, null, "invalid start request: null");
        }

        if (!message.Broadcast && message.PropletId is { Length: > 0 } target && !string.Equals(target, myId, StringComparison.Ordinal))
        {
            return StartParse.NotForMe;
        }

        var id = message.Id is { Length: > 0 } i ? i : null;
        var problem = Validate(message) ?? NullElement(message);
        if (problem is not null)
        {
            return new StartParse(null, id, problem, message.Attempt, message.Dispatch);
        }

        try
        {
            var limits = TaskLimits.From(message.CliArgs ?? [], defaults);
            var monitoring = MonitoringProfile.From(message.MonitoringProfile, message.Daemon);
            return new StartParse(new StartRequest(message, limits, monitoring), id, null);
        }
        catch (FormatException ex)
        {
            return new StartParse(null, id, $"invalid start request: {ex.Message}", message.Attempt, message.Dispatch);
        }
    }

    /// <summary>The original's checks, in its order and with its messages.</summary>
    public static string? Validate(StartMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var file = message.File is { Length: > 0 };
        var image = message.ImageUrl is { Length: > 0 };
        if (message.Id is not { Length: > 0 })
        {
            return "id is required";
        }

        if (message.Name is not { Length: > 0 })
        {
            return "name is required";
        }

        if (message.Encrypted)
        {
            if (!image)
            {
                return "image_url is required for encrypted workloads";
            }

            if (file)
            {
                return "encrypted workloads should only use image_url, not file";
            }
        }
        else if (!file && !image)
        {
            return "either file or image_url must be provided";
        }

        return null;
    }

    /// <summary>A JSON null inside cli_args (valid JSON, but nothing the task can be given; inputs' converter refuses it),
    /// or an env the guest cannot be given (<see cref="EnvProblem"/>).</summary>
    private static string? NullElement(StartMessage message) =>
        message.CliArgs?.Contains(null!) == true ? "invalid start request: cli_args must hold strings, not null"
        : EnvProblem(message.Env) is { } env ? $"invalid start request: {env}"
        : (NulProblem(message.Inputs, "inputs") ?? NulProblem(message.CliArgs, "cli_args")) is { } nul ? $"invalid start request: {nul}"
        : null;

    /// <summary>
    /// Why <paramref name="arguments"/> (<paramref name="field"/>) cannot be given as they are, or null: a NUL in one. A
    /// program's argv is C strings (a <c>_start</c> program's inputs in-process, the external runtime's inputs and
    /// cli_args), so an argument reached it cut at the NUL, silently. A WAVE string writes it as <c>\u{0}</c>.
    /// </summary>
    public static string? NulProblem(IReadOnlyList<string>? arguments, string field) =>
        arguments?.Any(a => a?.Contains('\0', StringComparison.Ordinal) == true) == true
            ? $"{field} must not hold NUL (a program's arguments are C strings; a WAVE string writes it as \\u{{0}})"
            : null;

    /// <summary>
    /// Why <paramref name="env"/> cannot be a guest's environment, or null. A variable reaches the guest as the C string
    /// <c>NAME=value</c> (WASI's environ, a child's envp): an empty name made Wasmtime throw (the task failed as
    /// "internal proplet error"), and a name with '=' or a NUL anywhere reached the guest cut or split at that character
    /// (<c>{"A=B":"x"}</c> read as <c>A</c> = <c>B=x</c>). A null value is valid JSON but not a string.
    /// </summary>
    public static string? EnvProblem(IReadOnlyDictionary<string, string>? env)
    {
        if (env is null)
        {
            return null;
        }

        foreach (var (name, value) in env)
        {
            if (value is null)
            {
                return "env values must be strings, not null";
            }

            if (name.Length == 0 || name.AsSpan().ContainsAny('=', '\0') || value.Contains('\0', StringComparison.Ordinal))
            {
                return "env names must be non-empty without '=' or NUL, and values without NUL";
            }
        }

        return null;
    }

    /// <summary>What a command that cannot be decoded still says of its task and target, read leniently (strings only),
    /// so its failure can be answered; nothing when it is not a JSON object. Starts and invokes (TaskRunner). Only its
    /// first JSON value is read, so an object followed by anything still names its task; a truncated object names none
    /// (its target may be in the part that is missing).</summary>
    internal static SalvagedCommand Salvage(ReadOnlySpan<byte> payload)
    {
        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { AllowMultipleValues = true });
            using var document = JsonDocument.ParseValue(ref reader);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return SalvagedCommand.None;
            }

            string? Text(string key) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            int? Number(string key) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) ? n : null;
            var broadcast = root.TryGetProperty("broadcast", out var b) && b.ValueKind == JsonValueKind.True;
            var attempt = Number("attempt");
            return new SalvagedCommand(
                Text("id") is { Length: > 0 } id ? id : null, Text("invocation_id"), broadcast ? null : Text("proplet_id"), attempt, attempt is null ? null : Number("dispatch"));
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return SalvagedCommand.None;
        }
    }
}
