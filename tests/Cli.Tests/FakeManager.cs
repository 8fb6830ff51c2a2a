using System.Collections.Concurrent;
using System.Net;
using System.Text;

namespace Propeller.Cli.Tests;

/// <summary>
/// A manager played by an HttpMessageHandler, for answers the real one does not give: a body of the wrong shape, an
/// event stream cut in the middle or replaying old changes, a slow answer. Every request's URL is noted first.
/// </summary>
internal sealed class FakeManager(Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>> answer) : HttpMessageHandler
{
    /// <summary>A base URL no test resolves: the fake answers before any connection.</summary>
    public const string Url = "http://manager.fake";

    public const string TaskId = "0193a5b0-7c2e-7000-8000-000000000001";

    public ConcurrentQueue<string> Requests { get; } = new();

    public static HttpResponseMessage Json(string json) =>
        new(HttpStatusCode.OK) { Content = new StringContent(json, Encoding.UTF8, "application/json") };

    /// <summary>A task in <paramref name="state"/> (3 completed) with results "42" once completed.</summary>
    public static string Task(int state, string proplet = "p1") =>
        $$"""{"id":"{{TaskId}}","name":"main","state":{{state}},"proplet_id":"{{proplet}}","results":{{(state == 3 ? "\"42\"" : "null")}}}""";

    /// <summary>A <c>task</c> event of the event stream: the task at <paramref name="version"/>.</summary>
    public static string TaskEvent(long version, int state) =>
        $$"""event: task{{"\n"}}data: {"id":"{{TaskId}}","version":{{version}},"deleted":false,"task":{{Task(state)}}}{{"\n\n"}}""";

    public const string Hello = "event: hello\ndata: {}\n\n";

    /// <summary>An event stream sending <paramref name="parts"/> one after another (each may wait or throw), then ending.</summary>
    public static HttpResponseMessage Events(params Func<CancellationToken, Task<string>>[] parts) =>
        new(HttpStatusCode.OK) { Content = new StreamContent(new ScriptedStream(parts)) { Headers = { { "Content-Type", "text/event-stream" } } } };

    public static Func<CancellationToken, Task<string>> Part(string text) => _ => System.Threading.Tasks.Task.FromResult(text);

    public static Func<CancellationToken, Task<string>> After(TimeSpan delay, string text) => async cancellationToken =>
    {
        await System.Threading.Tasks.Task.Delay(delay, cancellationToken);
        return text;
    };

    /// <summary>The connection breaks, as when the manager is killed: what SocketsHttpHandler throws then.</summary>
    public static Func<CancellationToken, Task<string>> Cut { get; } =
        _ => throw new HttpIOException(HttpRequestError.ResponseEnded, "The response ended prematurely.");

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Requests.Enqueue($"{request.Method} {request.RequestUri}");
        var response = await answer(request, cancellationToken);
        response.RequestMessage = request;
        return response;
    }

    /// <summary>A response body made of parts read one after another; each part is awaited when the reader gets to it.</summary>
    private sealed class ScriptedStream(Func<CancellationToken, Task<string>>[] parts) : Stream
    {
        private byte[] _pending = [];
        private int _position;
        private int _next;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("read asynchronously");

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (_position == _pending.Length)
            {
                if (_next == parts.Length)
                {
                    return 0;
                }

                _pending = Encoding.UTF8.GetBytes(await parts[_next++](cancellationToken));
                _position = 0;
            }

            var n = Math.Min(buffer.Length, _pending.Length - _position);
            _pending.AsMemory(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
