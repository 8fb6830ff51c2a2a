using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Manager.Http;
using Wolverine.Persistence.Durability;
using Wolverine.Persistence.Durability.DeadLetterManagement;
using Wolverine.Runtime;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// Wolverine's dead letters (its <c>wolverine_dead_letters</c> table, read through its own <see cref="IDeadLetters"/>
/// API) on the HTTP API (ADR 0014, decision 14): list them, mark one or all replayable (Wolverine's durability agent
/// then moves them back to its incoming envelopes and handles them again), and their count on /metrics.
/// </summary>
internal static class DeadLetterEndpoints
{
    public static void MapDeadLetterEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/dead-letters", ListAsync).WithName("listDeadLetters");
        app.MapPost("/dead-letters/{id}/replay", ReplayOneAsync).WithName("replayDeadLetter");
        app.MapPost("/dead-letters/replay", ReplayAllAsync).WithName("replayDeadLetters");
    }

    private static async Task<IResult> ListAsync(HttpRequest request, IWolverineRuntime runtime, CancellationToken cancellationToken)
    {
        if (!Paging.TryRead(request, out var offset, out var limit) || limit is < 1 or > 1000 || offset > int.MaxValue)
        {
            return ApiResults.BadRequest("invalid offset/limit");
        }

        // Wolverine pages by number (from 1; 0 is taken as 1) and size: the page holding the offset is read and cut at the
        // offset, and the next one completes it when the offset falls inside a page.
        var page = (int)(offset / limit) + 1;
        var skip = (int)(offset % limit);
        var results = await runtime.Storage.DeadLetters.QueryAsync(new DeadLetterEnvelopeQuery { PageNumber = page, PageSize = (int)limit }, cancellationToken);
        var envelopes = results.Envelopes.Skip(skip).ToList();
        if (skip > 0 && envelopes.Count < (int)limit && (long)offset + envelopes.Count < results.TotalCount)
        {
            var next = await runtime.Storage.DeadLetters.QueryAsync(new DeadLetterEnvelopeQuery { PageNumber = page + 1, PageSize = (int)limit }, cancellationToken);
            envelopes.AddRange(next.Envelopes.Take((int)limit - envelopes.Count));
        }

        // Wolverine counts over the rows a page returns: a page past the end says 0; the first page says how many there are.
        var total = results.Envelopes.Count == 0 && page > 1
            ? (await runtime.Storage.DeadLetters.QueryAsync(new DeadLetterEnvelopeQuery { PageNumber = 1, PageSize = 1 }, cancellationToken)).TotalCount
            : results.TotalCount;
        return Results.Ok(new DeadLetterListJson(total, [.. envelopes.Select(ToJson)]));
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
    [property: JsonPropertyName("sent_at")] DateTimeOffset SentAt,
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
