using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Manager.Http;
using Wolverine.Persistence.Durability;
using Wolverine.Persistence.Durability.DeadLetterManagement;
using Wolverine.RDBMS;
using Wolverine.Runtime;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// Wolverine's dead letters (its <c>wolverine_dead_letters</c> table, read through its own <see cref="IDeadLetters"/>
/// API, paged in an order of our own) on the HTTP API (ADR 0014, decision 14): list them, mark one or all replayable
/// (Wolverine's durability agent then moves them back to its incoming envelopes and handles them again), and their
/// count on /metrics.
/// </summary>
internal static class DeadLetterEndpoints
{
    public static void MapDeadLetterEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/dead-letters", ListAsync).WithName("listDeadLetters")
            .WithSummary("List dead letters")
            .WithDescription("Messages whose handling failed after every retry (Wolverine's dead letter queue), newest first.")
            .Paged()
            .Produces<DeadLetterListJson>()
            .Refuses(400, 503);
        app.MapPost("/dead-letters/{id}/replay", ReplayOneAsync).WithName("replayDeadLetter")
            .WithSummary("Replay a dead letter")
            .WithDescription("Marks the dead letter replayable: the durability agent moves it back to its queue.")
            .Path("id", "The dead letter's id (a UUID).")
            .Produces<DeadLetterReplayJson>()
            .Refuses(400, 403, 404, 503);
        app.MapPost("/dead-letters/replay", ReplayAllAsync).WithName("replayDeadLetters")
            .WithSummary("Replay every dead letter")
            .Produces<DeadLetterReplayJson>()
            .Refuses(403, 503);
    }

    private static async Task<IResult> ListAsync(HttpRequest request, IWolverineRuntime runtime, CancellationToken cancellationToken)
    {
        if (!Paging.TryRead(request, out var offset, out var limit) || limit is < 1 or > 1000)
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        // Wolverine's own query (IDeadLetters.QueryAsync, WolverineFx.RDBMS 6.64.2) orders by execution_time alone, null
        // for nearly every dead letter, so its offset pages repeated some letters and skipped others, and it offers no
        // other order. The page's ids come from the table in one total order (oldest failure first, then the id, the
        // table's primary key), the letters from Wolverine's query by those ids (it reads and decodes them).
        var database = runtime.Storage as IMessageDatabase
            ?? throw new InvalidOperationException($"Wolverine's message store is a {runtime.Storage.GetType().Name}, not PostgreSQL");
        var (total, ids) = await PageAsync(database, (long)offset, (int)limit, cancellationToken);
        var letters = ids.Length == 0
            ? []
            : (await database.DeadLetters.QueryAsync(new DeadLetterEnvelopeQuery { MessageIds = ids, PageSize = ids.Length }, cancellationToken)).Envelopes;
        var byId = letters.ToDictionary(letter => letter.Id);
        // A letter replayed (deleted) between the two reads is left out of its page.
        return Results.Ok(new DeadLetterListJson(total, [.. ids.Where(byId.ContainsKey).Select(id => ToJson(byId[id]))]));
    }

    /// <summary>How many dead letters there are (not archived, as Wolverine lists them) and the ids of one page, in one
    /// snapshot.</summary>
    private static async Task<(int Total, Guid[] Ids)> PageAsync(IMessageDatabase database, long offset, int limit, CancellationToken cancellationToken)
    {
        var table = $"{database.SchemaName}.wolverine_dead_letters";
        await using var command = database.DataSource.CreateCommand(
            $"select (select count(*)::int from {table} where archived_at is null), "
            + $"array(select id from {table} where archived_at is null order by coalesce(failed_at, sent_at), id offset $1 limit $2)");
        foreach (var value in new object[] { offset, limit })
        {
            var parameter = command.CreateParameter();
            parameter.Value = value;
            command.Parameters.Add(parameter);
        }

        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (await reader.GetFieldValueAsync<int>(0, cancellationToken), await reader.GetFieldValueAsync<Guid[]>(1, cancellationToken));
    }

    private static async Task<IResult> ReplayOneAsync(string id, IWolverineRuntime runtime, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(id, out var envelopeId))
        {
            return ApiResults.BadRequest("invalid dead letter id");
        }

        var letters = runtime.Storage.DeadLetters;
        if (await letters.DeadLetterEnvelopeByIdAsync(envelopeId) is null)
        {
            return ApiResults.NotFound("dead letter not found");
        }

        await letters.ReplayAsync(new DeadLetterEnvelopeQuery([envelopeId]), cancellationToken);
        return Results.Ok(new DeadLetterReplayJson(1));
    }

    private static async Task<IResult> ReplayAllAsync(IWolverineRuntime runtime, CancellationToken cancellationToken)
    {
        var letters = runtime.Storage.DeadLetters;
        var pending = await letters.QueryAsync(new DeadLetterEnvelopeQuery { Replayable = false, PageSize = 1 }, cancellationToken);
        await letters.ReplayAsync(new DeadLetterEnvelopeQuery(), cancellationToken);
        return Results.Ok(new DeadLetterReplayJson(pending.TotalCount));
    }

    private static DeadLetterJson ToJson(DeadLetterEnvelope letter)
    {
        JsonElement? message = null;
        if (letter.Envelope.Data is { Length: > 0 } data)
        {
            try
            {
                message = JsonSerializer.Deserialize<JsonElement>(data);
            }
            catch (JsonException)
            {
                // Not JSON: listed without its body.
            }
        }

        return new DeadLetterJson(
            letter.Id, letter.MessageType, letter.ReceivedAt, letter.ExceptionType, letter.ExceptionMessage, letter.SentAt, letter.Replayable, letter.ReplayCount, message);
    }
}

/// <summary>GET /dead-letters: the total and one page.</summary>
public sealed record DeadLetterListJson(
    [property: JsonPropertyName("total")] int Total,
    [property: JsonPropertyName("dead_letters")] IReadOnlyList<DeadLetterJson> DeadLetters);

/// <summary>One dead letter: what failed, where, why, and whether it is marked for replay.</summary>
public sealed record DeadLetterJson(
    [property: JsonPropertyName("id")] Guid Id,
    [property: JsonPropertyName("message_type")] string MessageType,
    [property: JsonPropertyName("received_at")] string ReceivedAt,
    [property: JsonPropertyName("exception_type")] string ExceptionType,
    [property: JsonPropertyName("exception_message")] string ExceptionMessage,
    [property: JsonPropertyName("sent_at"), JsonConverter(typeof(Contracts.Json.WireTimeConverter))] DateTimeOffset SentAt,
    [property: JsonPropertyName("replayable")] bool Replayable,
    [property: JsonPropertyName("replay_count")] int ReplayCount,
    [property: JsonPropertyName("message")] JsonElement? Message);

/// <summary>POST /dead-letters/.../replay: how many were marked replayable.</summary>
public sealed record DeadLetterReplayJson([property: JsonPropertyName("marked")] int Marked);

/// <summary>
/// The dead letter count as the gauge <c>wolverine_dead_letters</c> on /metrics, read from Wolverine's message store
/// (its own counts) when /metrics is scraped.
/// </summary>
public sealed class DeadLetterMetrics : IDisposable
{
    private readonly IWolverineRuntime _runtime;
    private readonly Meter _meter = new("Propeller.Manager.Wolverine");
    private long _deadLetters;
    private long _scheduled;

    public DeadLetterMetrics(IWolverineRuntime runtime)
    {
        _runtime = runtime;
        _meter.CreateObservableGauge("wolverine_dead_letters", () => Interlocked.Read(ref _deadLetters), description: "Messages in Wolverine's dead letters (GET /dead-letters)");
        _meter.CreateObservableGauge("wolverine_scheduled_messages", () => Interlocked.Read(ref _scheduled), description: "Durable scheduled messages waiting (sweep and liveness timers)");
    }

    public async Task SampleAsync()
    {
        var counts = await _runtime.Storage.Admin.FetchCountsAsync();
        Interlocked.Exchange(ref _deadLetters, counts.DeadLetter);
        Interlocked.Exchange(ref _scheduled, counts.Scheduled);
    }

    public void Dispose() => _meter.Dispose();
}
