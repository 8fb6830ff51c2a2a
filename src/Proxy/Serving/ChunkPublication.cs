using System.Buffers;
using MQTTnet.Exceptions;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Proxy.Serving;

/// <summary>
/// One publication of an artefact's chunks, in one format (JSON on <c>registry/server</c>, or binary on
/// <c>registry/chunk</c>, <see cref="IChunkPayloads"/>): the chunks asked for (all, or a re-request's
/// list), in index order, with up to <see cref="Window"/> publishes in flight (the broker connection keeps them within
/// the broker's Receive Maximum). A pulled artefact is published while it arrives: <see cref="ReceivedAsync"/> prepares
/// (for JSON: encodes) and sends each complete chunk but the last; <see cref="FinishAsync"/>, called once the artefact is verified, sends
/// the rest. A chunk that cannot be published is skipped, like the original, and counted: the proplet asks again.
/// Once a publish has timed out with the connection down, the publication is broken: the chunks not yet sent are
/// counted as failed without being sent. Before, each waited PROXY_MQTT_TIMEOUT for the connection, eight at a time,
/// and a broker outage kept a 100 MiB delivery (800 chunks) and its fetch slot for about 50 minutes.
/// </summary>
internal sealed class ChunkPublication(
    BrokerConnection connection, string topic, MqttQualityOfServiceLevel qos, ProxyMetrics metrics, ILogger logger, string app, IChunkPayloads chunks,
    IReadOnlyList<int>? wanted, Func<string, int, ValueTask<bool>>? lose, Action? started, CancellationToken cancellationToken) : IDisposable
{
    /// <summary>Publishes in flight at once: enough to keep the socket busy while the broker acknowledges.</summary>
    public const int Window = 8;

    private readonly SemaphoreSlim _window = new(Window);
    private readonly List<Task> _publishes = [];
    private int _next;
    private volatile bool _broken;

    public IChunkPayloads Chunks { get; } = chunks;

    /// <summary>The chunk indices to publish, in order: those asked for that the artefact has; all when none was asked
    /// for, or none of those asked for fits (a re-request counted against another artefact under the name, e.g. a tag
    /// that moved to a smaller one: answered with nothing, its proplet would ask again until it timed out).</summary>
    public IReadOnlyList<int> Indices { get; } =
        wanted?.Where(i => i >= 0 && i < chunks.Layout.Total).Distinct().Order().ToList() is { Count: > 0 } fitting ? fitting : [.. Enumerable.Range(0, chunks.Layout.Total)];

    /// <summary>The first <paramref name="received"/> bytes of <paramref name="data"/> have arrived (unverified): every
    /// chunk they complete, except the artefact's last, is prepared and published.</summary>
    public async ValueTask ReceivedAsync(byte[] data, int received)
    {
        while (_next < Indices.Count && Indices[_next] < Chunks.Layout.Total - 1)
        {
            var index = Indices[_next];
            var (offset, length) = Chunks.Layout.Range(index);
            if (offset + length > received)
            {
                return;
            }

            Chunks.Prepare(index, data);
            await SendAsync(index);
            _next++;
        }
    }

    /// <summary>Publishes the chunks not published yet (all are prepared by now) and waits for every publish.</summary>
    public async Task FinishAsync()
    {
        for (; _next < Indices.Count; _next++)
        {
            await SendAsync(Indices[_next]);
        }

        await DrainAsync();
    }

    /// <summary>Waits for the publishes started so far (each handles its own failure).</summary>
    public Task DrainAsync() => Task.WhenAll(_publishes);

    public void Dispose() => _window.Dispose();

    private async Task SendAsync(int index)
    {
        if (_publishes.Count == 0)
        {
            started?.Invoke(); // the first chunk goes out now
        }

        await _window.WaitAsync(cancellationToken);
        if (_broken)
        {
            _window.Release();
            metrics.ChunkFailed();
            return;
        }

        _publishes.Add(PublishAsync(Chunks.Payload(app, index), index));
    }

    private async Task PublishAsync(ReadOnlySequence<byte> payload, int index)
    {
        try
        {
            if (lose is not null && await lose(app, index))
            {
                throw new BrokerPublishException($"chunk {index} of {app} lost on purpose (test)");
            }

            await connection.PublishAsync(topic, payload, qos, cancellationToken);
            metrics.ChunkPublished();
        }
        catch (Exception ex) when (ex is TimeoutException or BrokerPublishException or MqttCommunicationException or ObjectDisposedException && !cancellationToken.IsCancellationRequested)
        {
            // Like the original, a failed chunk is skipped; unlike it, the proplet asks for the missing ones again.
            metrics.ChunkFailed();
            ProxyLog.ChunkFailed(logger, index, app, ex.Message);
            if (ex is TimeoutException && !connection.IsConnected && !_broken)
            {
                // The broker is gone for at least PROXY_MQTT_TIMEOUT: the rest would each wait as long in vain. The
                // proplets ask for the missing chunks again (ours), or time out and are retried (the original's).
                _broken = true;
                ProxyLog.PublicationBroken(logger, app);
            }
        }
        finally
        {
            _window.Release();
        }
    }
}
