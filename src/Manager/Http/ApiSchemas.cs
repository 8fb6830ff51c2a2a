using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Contracts.Json;
using Propeller.Contracts.Proplets;

namespace Propeller.Manager.Http;

// The answers the handlers write, each shape stated once: the handlers return these records and the OpenAPI document
// (ApiDocs) describes them; tests/Manager.Tests/Http/ApiFuzzTests.cs checks the real answers against the document.
// Every time is written with WireTimeConverter (spec §1.1: RFC 3339 in UTC, `Z`): a DateTimeOffset as Npgsql reads it
// (offset 0) is otherwise written `+00:00` by System.Text.Json, which the original never writes.

/// <summary>POST /tasks/{id}/start.</summary>
internal sealed record StartedJson([property: JsonPropertyName("started")] bool Started);

/// <summary>POST /tasks/{id}/stop.</summary>
internal sealed record StoppedJson([property: JsonPropertyName("stopped")] bool Stopped);

/// <summary>GET /tasks/{id}/results when the task has results (an empty body when it has none).</summary>
internal sealed record TaskResultsJson([property: JsonPropertyName("results")] JsonElement Results);

/// <summary>POST /tasks/{id}/invoke: the invocation's results (a broadcast to a latent task that is not running answers an empty 200).</summary>
internal sealed record InvokedJson([property: JsonPropertyName("invoked")] bool Invoked, [property: JsonPropertyName("results")] string Results);

/// <summary>GET /tasks/activity: how many events of each type the task streams hold, the newest's sequence and time.</summary>
internal sealed record TaskActivityJson(
    [property: JsonPropertyName("events")] IReadOnlyDictionary<string, long> Events,
    [property: JsonPropertyName("last_sequence")] long LastSequence,
    [property: JsonPropertyName("last_event_at"), JsonConverter(typeof(WireTimeConverter))] DateTimeOffset? LastEventAt);

/// <summary>GET /proplets.</summary>
internal sealed record PropletPageJson(
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("limit")] long Limit,
    [property: JsonPropertyName("total")] long Total,
    [property: JsonPropertyName("proplets")] IReadOnlyList<PropletJson> Proplets);

/// <summary>GET /proplets/{id}/alive-history: the heartbeats' times (RFC 3339, UTC).</summary>
internal sealed record AliveHistoryPageJson(
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("limit")] long Limit,
    [property: JsonPropertyName("total")] long Total,
    [property: JsonPropertyName("history")] IReadOnlyList<string> History);

/// <summary>GET /tasks/{id}/metrics.</summary>
internal sealed record TaskMetricsPageJson(
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("limit")] long Limit,
    [property: JsonPropertyName("total")] long Total,
    [property: JsonPropertyName("metrics")] IReadOnlyList<TaskMetricsSampleJson> Metrics);

/// <summary>One sample of a task's metrics, as the proplet reported it.</summary>
internal sealed record TaskMetricsSampleJson(
    [property: JsonPropertyName("task_id")] string TaskId,
    [property: JsonPropertyName("proplet_id")] string PropletId,
    [property: JsonPropertyName("metrics")] JsonElement Metrics,
    [property: JsonPropertyName("aggregated"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonElement? Aggregated,
    [property: JsonPropertyName("timestamp"), JsonConverter(typeof(WireTimeConverter))] DateTimeOffset Timestamp);

/// <summary>GET /proplets/{id}/metrics.</summary>
internal sealed record PropletMetricsPageJson(
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("limit")] long Limit,
    [property: JsonPropertyName("total")] long Total,
    [property: JsonPropertyName("metrics")] IReadOnlyList<PropletMetricsSampleJson> Metrics);

/// <summary>One sample of a proplet's metrics.</summary>
internal sealed record PropletMetricsSampleJson(
    [property: JsonPropertyName("proplet_id")] string PropletId,
    [property: JsonPropertyName("namespace")] string Namespace,
    [property: JsonPropertyName("timestamp"), JsonConverter(typeof(WireTimeConverter))] DateTimeOffset Timestamp,
    [property: JsonPropertyName("cpu_metrics")] JsonElement CpuMetrics,
    [property: JsonPropertyName("memory_metrics")] JsonElement MemoryMetrics);

/// <summary>GET /health (the original's HealthInfo).</summary>
internal sealed record HealthJson(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("version")] string Version,
    [property: JsonPropertyName("commit")] string Commit,
    [property: JsonPropertyName("description")] string Description,
    [property: JsonPropertyName("build_time")] string BuildTime,
    [property: JsonPropertyName("instance_id")] string InstanceId);

/// <summary>GET /health/live.</summary>
internal sealed record LiveJson([property: JsonPropertyName("status")] string Status);

/// <summary>GET /health/ready: <c>pass</c> or <c>fail</c>, and each check's outcome (<c>pass</c>, <c>not configured</c>, or what failed: a
/// failure of PostgreSQL's is answered <c>failed (the reason is logged)</c>, its text naming the database's address).</summary>
internal sealed record ReadyJson([property: JsonPropertyName("status")] string Status, [property: JsonPropertyName("checks")] ReadyChecksJson Checks);

/// <summary>The checks of GET /health/ready.</summary>
internal sealed record ReadyChecksJson(
    [property: JsonPropertyName("postgres")] string Postgres,
    [property: JsonPropertyName("mqtt")] string Mqtt,
    [property: JsonPropertyName("projections")] string Projections);
