using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Hosting;

/// <summary><c>GET /plugins</c> and <c>POST /plugins/reload</c> (issue 8).</summary>
public static class PluginEndpoints
{
    public static IEndpointRouteBuilder MapPluginEndpoints(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapGet("/plugins", (PluginCatalog catalog) => Results.Json(Describe(catalog, catalog.Current))).WithName("list-plugins")
            .WithSummary("List plugins")
            .WithDescription("The plugins loaded from the plugin directory in the order they run, their hooks, limits and counters, and the files skipped with why.")
            .Produces<PluginListing>();
        endpoints.MapPost("/plugins/reload", (PluginCatalog catalog, HttpContext http) =>
        {
            try
            {
                // The request's token ends a start function still running when the caller went away (the old set stays).
                // A second reload while one runs is refused, not queued: each waiting request held a thread-pool thread
                // for as long as the running reload's start functions took.
                return catalog.TryReload(http.RequestAborted) is { } set
                    ? Results.Json(Describe(catalog, set))
                    : Results.Json(new Dictionary<string, string> { ["error"] = "a reload of the plugins is already running; try again when it has finished" }, statusCode: StatusCodes.Status409Conflict);
            }
            catch (PluginDirectoryException e)
            {
                return Results.Json(new Dictionary<string, string> { ["error"] = e.Message }, statusCode: StatusCodes.Status500InternalServerError);
            }
        }).WithName("reload-plugins")
            .WithSummary("Reload plugins")
            .WithDescription("Loads the plugin directory again; 500 {\"error\"} when it cannot be read (the plugins loaded before stay), 409 {\"error\"} while another reload runs. A file of a plugin loaded before that fails to load leaves that plugin at its previous version, listed under \"kept\" with why.")
            .Produces<PluginListing>()
            .Produces<Dictionary<string, string>>(StatusCodes.Status500InternalServerError)
            .Produces<Dictionary<string, string>>(StatusCodes.Status409Conflict)
            .Produces<Dictionary<string, string>>(StatusCodes.Status403Forbidden);
        return endpoints;
    }

    /// <summary>The body of <c>GET /plugins</c>.</summary>
    public static PluginListing Describe(PluginCatalog catalog, PluginSet set)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(set);
        return new PluginListing(
            catalog.Options.Directory ?? "",
            catalog.LoadedAt,
            [.. set.All.Select((p, i) => new PluginDescription(
                p.Name,
                Path.GetFileName(p.File),
                i,
                p.Manifest.Version,
                p.Hash,
                p.Active,
                PluginHookNames.Names(p.Hooks),
                new PluginLimitsDescription(
                    p.Limits.Fuel, p.Limits.MemoryMb, (long)p.Limits.Timeout.TotalMilliseconds,
                    p.Limits.JobFuel, p.Limits.JobMemoryMb, (long)p.Limits.JobTimeout.TotalMilliseconds),
                p.Manifest.Capabilities,
                new PluginCountersDescription(
                    p.Counters.Calls, p.Counters.Denies, p.Counters.Failures, p.Counters.JobsEnqueued,
                    p.Counters.JobsRejected, p.Counters.JobsSucceeded, p.Counters.JobsFailed)))],
            [.. set.Skipped.Select(s => new PluginSkipped(s.Plugin, Path.GetFileName(s.File), s.Error))])
        {
            Kept = [.. set.Kept.Select(k => new PluginKept(k.Plugin, Path.GetFileName(k.File), k.Error, set.Find(k.Plugin)?.Hash ?? ""))],
        };
    }
}

public sealed record PluginListing(
    [property: System.Text.Json.Serialization.JsonPropertyName("directory")] string Directory,
    [property: System.Text.Json.Serialization.JsonPropertyName("loaded_at")] DateTimeOffset? LoadedAt,
    [property: System.Text.Json.Serialization.JsonPropertyName("plugins")] IReadOnlyList<PluginDescription> Plugins,
    [property: System.Text.Json.Serialization.JsonPropertyName("skipped")] IReadOnlyList<PluginSkipped> Skipped)
{
    /// <summary>Files that failed on the last reload while their plugin stayed at the version loaded before (its sha256).</summary>
    [System.Text.Json.Serialization.JsonPropertyName("kept")]
    public IReadOnlyList<PluginKept> Kept { get; init; } = [];
}

public sealed record PluginDescription(
    [property: System.Text.Json.Serialization.JsonPropertyName("name")] string Name,
    [property: System.Text.Json.Serialization.JsonPropertyName("file")] string File,
    [property: System.Text.Json.Serialization.JsonPropertyName("order")] int Order,
    [property: System.Text.Json.Serialization.JsonPropertyName("version")] string? Version,
    [property: System.Text.Json.Serialization.JsonPropertyName("sha256")] string Sha256,
    [property: System.Text.Json.Serialization.JsonPropertyName("active")] bool Active,
    [property: System.Text.Json.Serialization.JsonPropertyName("hooks")] IReadOnlyList<string> Hooks,
    [property: System.Text.Json.Serialization.JsonPropertyName("limits")] PluginLimitsDescription Limits,
    [property: System.Text.Json.Serialization.JsonPropertyName("capabilities")] IReadOnlyList<string> Capabilities,
    [property: System.Text.Json.Serialization.JsonPropertyName("counters")] PluginCountersDescription Counters);

public sealed record PluginLimitsDescription(
    [property: System.Text.Json.Serialization.JsonPropertyName("fuel")] long Fuel,
    [property: System.Text.Json.Serialization.JsonPropertyName("memory_mb")] int MemoryMb,
    [property: System.Text.Json.Serialization.JsonPropertyName("timeout_ms")] long TimeoutMs,
    [property: System.Text.Json.Serialization.JsonPropertyName("job_fuel")] long JobFuel,
    [property: System.Text.Json.Serialization.JsonPropertyName("job_memory_mb")] int JobMemoryMb,
    [property: System.Text.Json.Serialization.JsonPropertyName("job_timeout_ms")] long JobTimeoutMs);

public sealed record PluginCountersDescription(
    [property: System.Text.Json.Serialization.JsonPropertyName("calls")] long Calls,
    [property: System.Text.Json.Serialization.JsonPropertyName("denies")] long Denies,
    [property: System.Text.Json.Serialization.JsonPropertyName("failures")] long Failures,
    [property: System.Text.Json.Serialization.JsonPropertyName("jobs_enqueued")] long JobsEnqueued,
    [property: System.Text.Json.Serialization.JsonPropertyName("jobs_rejected")] long JobsRejected,
    [property: System.Text.Json.Serialization.JsonPropertyName("jobs_succeeded")] long JobsSucceeded,
    [property: System.Text.Json.Serialization.JsonPropertyName("jobs_failed")] long JobsFailed);

public sealed record PluginSkipped(
    [property: System.Text.Json.Serialization.JsonPropertyName("name")] string Name,
    [property: System.Text.Json.Serialization.JsonPropertyName("file")] string File,
    [property: System.Text.Json.Serialization.JsonPropertyName("error")] string Error);

public sealed record PluginKept(
    [property: System.Text.Json.Serialization.JsonPropertyName("name")] string Name,
    [property: System.Text.Json.Serialization.JsonPropertyName("file")] string File,
    [property: System.Text.Json.Serialization.JsonPropertyName("error")] string Error,
    [property: System.Text.Json.Serialization.JsonPropertyName("sha256")] string Sha256);
