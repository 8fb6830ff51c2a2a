using System.Net;
using System.Net.ServerSentEvents;
using System.Text.Json;
using Propeller.Application.Changes;
using Propeller.Domain.Tasks;

namespace Propeller.Manager.Tests.Events;

/// <summary>A change feed whose every subscription starts with the same task notices (id, version), in their order.</summary>
internal sealed class ScriptedFeed(params (TaskId Id, long Version)[] notices) : IChangeFeed
{
    public ChangeSubscription Subscribe()
    {
        var subscription = new ChangeSubscription(16, _ => { });
        foreach (var (id, version) in notices)
        {
            subscription.Post(new ChangeNotice($"task-{id.Value}", version, TaskState.Initial with { Exists = true, Deleted = true, Id = id }));
        }

        return subscription;
    }

    /// <summary>The task events GET /events?types=task sends, as (id, version), until <paramref name="done"/> (10 s at most).</summary>
    public static async Task<List<(string Id, long Version)>> ReadTasksAsync(HttpClient client, Func<List<(string Id, long Version)>, bool> done, CancellationToken cancellationToken)
    {
        using var response = await client.GetAsync("/events?types=task", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var seen = new List<(string Id, long Version)>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        await foreach (var item in SseParser.Create(await response.Content.ReadAsStreamAsync(cancellationToken)).EnumerateAsync(timeout.Token))
        {
            if (item.EventType == "task")
            {
                var data = JsonDocument.Parse(item.Data).RootElement;
                seen.Add((data.GetProperty("id").GetString()!, data.GetProperty("version").GetInt64()));
                if (done(seen))
                {
                    break;
                }
            }
        }

        return seen;
    }
}
