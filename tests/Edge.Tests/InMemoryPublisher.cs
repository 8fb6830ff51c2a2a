using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using Propeller.Edge.Messaging;

namespace Propeller.Edge.Tests;

/// <summary>Records what the proplet publishes, by topic path.</summary>
internal sealed class InMemoryPublisher : IPropletPublisher
{
    private readonly Channel<(string Path, JsonElement Payload)> _published = Channel.CreateUnbounded<(string, JsonElement)>();

    public ConcurrentQueue<string> Paths { get; } = new();

    public Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        Paths.Enqueue(path);
        _published.Writer.TryWrite((path, JsonSerializer.Deserialize<JsonElement>(payload.Span)));
        return Task.CompletedTask;
    }

    /// <summary>The next message on <paramref name="path"/> (others are skipped), waiting up to 30 s.</summary>
    public async Task<JsonElement> NextAsync(string path, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            var (p, payload) = await _published.Reader.ReadAsync(timeout.Token);
            if (p == path)
            {
                return payload;
            }
        }
    }

    public bool TryNext(out (string Path, JsonElement Payload) message) => _published.Reader.TryRead(out message);
}
