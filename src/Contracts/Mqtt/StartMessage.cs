using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Contracts.Json;

namespace Propeller.Contracts.Mqtt;

/// <summary>
/// <c>control/manager/start</c> (spec propeller-edge.md §1.8): the Go manager's startPayload. Booleans are always
/// written (the Rust proplet rejects null bools); <c>cli_args</c> is written as null when unset; <c>proplet_id</c>
/// is omitted for broadcast starts.
/// </summary>
public sealed record StartMessage
{
    [JsonPropertyName("id")]
    public required string Id { get; init; }

    [JsonPropertyName("name")]
    public required string Name { get; init; }

    [JsonPropertyName("state")]
    public int State { get; init; }

    [JsonPropertyName("image_url"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ImageUrl { get; init; }

    [JsonPropertyName("file"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? File { get; init; }

    /// <summary>Strings on the wire; numbers are read too, as their literal text (spec §7.8 item 3).</summary>
    [JsonPropertyName("inputs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    [JsonConverter(typeof(FlexStringsConverter))]
    public IReadOnlyList<string>? Inputs { get; init; }

    [JsonPropertyName("cli_args")]
    public IReadOnlyList<string>? CliArgs { get; init; }

    [JsonPropertyName("broadcast")]
    public bool Broadcast { get; init; }

    [JsonPropertyName("daemon")]
    public bool Daemon { get; init; }

    [JsonPropertyName("latent")]
    public bool Latent { get; init; }

    [JsonPropertyName("env"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? Env { get; init; }

    [JsonPropertyName("encrypted")]
    public bool Encrypted { get; init; }

    [JsonPropertyName("kbs_resource_path"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? KbsResourcePath { get; init; }

    [JsonPropertyName("monitoring_profile"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? MonitoringProfile { get; init; }

    [JsonPropertyName("proplet_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PropletId { get; init; }

    [JsonPropertyName("hal_storage_path"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? HalStoragePath { get; init; }

    /// <summary>
    /// Our extension (docs/compatibility.md): the manager's attempt number of the run this start begins. Our proplet
    /// echoes it in the result and drops a start whose attempt a stop already named; the original ignores it.
    /// </summary>
    [JsonPropertyName("attempt"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Attempt { get; init; }

    /// <summary>
    /// Our extension (docs/compatibility.md): which dispatch of the attempt this start is, from 1 (a re-dispatch after
    /// the proplet went away keeps the attempt and counts this up). With <see cref="Attempt"/> it names one run: our
    /// proplet does not run again a run that finished here (a start delivered twice, or sent again because the
    /// proplet's report of what it holds lacked it); the original ignores it.
    /// </summary>
    [JsonPropertyName("dispatch"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Dispatch { get; init; }
}
