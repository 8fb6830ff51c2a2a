using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Contracts.Json;

namespace Propeller.Contracts.Tasks;

/// <summary>
/// A task on the wire (spec propeller-manager.md §2.1): field names, omission rules and the integer state are the
/// original's. Used for responses (with <see cref="File"/> redacted) and as the create/update request body, where a
/// JSON <c>null</c> in a bool, number or time field counts as absent (Go's decoding).
/// </summary>
public sealed record TaskJson
{
    [JsonPropertyName("id")]
    public string Id { get; init; } = "";

    [JsonPropertyName("name")]
    public string Name { get; init; } = "";

    [JsonPropertyName("kind")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Kind { get; init; }

    [JsonPropertyName("state")]
    [JsonConverter(typeof(NullAsDefaultConverter<int>))]
    public int State { get; init; }

    [JsonPropertyName("image_url")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ImageUrl { get; init; }

    /// <summary>Base64; redacted in responses.</summary>
    [JsonPropertyName("file")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? File { get; init; }

    /// <summary>Written as <c>null</c> when unset, like the original.</summary>
    [JsonPropertyName("cli_args")]
    public IReadOnlyList<string>? CliArgs { get; init; }

    [JsonPropertyName("inputs")]
    [JsonConverter(typeof(FlexStringsConverter))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Inputs { get; init; }

    [JsonPropertyName("env")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? Env { get; init; }

    [JsonPropertyName("daemon")]
    [JsonConverter(typeof(NullAsDefaultConverter<bool>))]
    public bool Daemon { get; init; }

    [JsonPropertyName("latent")]
    [JsonConverter(typeof(NullAsDefaultConverter<bool>))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Latent { get; init; }

    [JsonPropertyName("encrypted")]
    [JsonConverter(typeof(NullAsDefaultConverter<bool>))]
    public bool Encrypted { get; init; }

    [JsonPropertyName("kbs_resource_path")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? KbsResourcePath { get; init; }

    [JsonPropertyName("proplet_id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PropletId { get; init; }

    [JsonPropertyName("depends_on")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? DependsOn { get; init; }

    [JsonPropertyName("run_if")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? RunIf { get; init; }

    [JsonPropertyName("workflow_id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? WorkflowId { get; init; }

    [JsonPropertyName("job_id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? JobId { get; init; }

    [JsonPropertyName("results")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? Results { get; init; }

    [JsonPropertyName("error")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Error { get; init; }

    [JsonPropertyName("monitoring_profile")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? MonitoringProfile { get; init; }

    [JsonPropertyName("start_time")]
    [JsonConverter(typeof(WireTimeConverter))]
    public DateTimeOffset StartTime { get; init; }

    [JsonPropertyName("finish_time")]
    [JsonConverter(typeof(WireTimeConverter))]
    public DateTimeOffset FinishTime { get; init; }

    [JsonPropertyName("created_at")]
    [JsonConverter(typeof(WireTimeConverter))]
    public DateTimeOffset CreatedAt { get; init; }

    [JsonPropertyName("updated_at")]
    [JsonConverter(typeof(WireTimeConverter))]
    public DateTimeOffset UpdatedAt { get; init; }

    [JsonPropertyName("mode")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Mode { get; init; }

    [JsonPropertyName("schedule")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Schedule { get; init; }

    [JsonPropertyName("next_run")]
    [JsonConverter(typeof(WireTimeConverter))]
    public DateTimeOffset NextRun { get; init; }

    [JsonPropertyName("is_recurring")]
    [JsonConverter(typeof(NullAsDefaultConverter<bool>))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool IsRecurring { get; init; }

    [JsonPropertyName("timezone")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Timezone { get; init; }

    [JsonPropertyName("broadcast")]
    [JsonConverter(typeof(NullAsDefaultConverter<bool>))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Broadcast { get; init; }

    [JsonPropertyName("priority")]
    [JsonConverter(typeof(NullAsDefaultConverter<int>))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Priority { get; init; }

    [JsonPropertyName("metadata")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? Metadata { get; init; }

    [JsonPropertyName("hal_storage_path")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? HalStoragePath { get; init; }
}
