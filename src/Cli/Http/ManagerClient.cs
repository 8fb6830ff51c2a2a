using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Propeller.Cli.Tasks;

namespace Propeller.Cli.Http;

/// <summary>
/// The manager's HTTP API as the CLI uses it: JSON in and out, <c>{"error": ...}</c> bodies and transport failures
/// turned into <see cref="CliException"/>s that name the manager's address. Paths are relative to the base address, so
/// a manager behind a prefix (<c>http://gw/propeller</c>) keeps it.
/// </summary>
internal sealed class ManagerClient : IDisposable
{
    private readonly HttpClient _http;

    /// <summary>
    /// The largest answer read (HttpClient's default is 2 GiB): far above any the manager gives (a page of at most 100
    /// tasks or 1000 events, modules redacted, metadata at most 1 MiB each), so that a body that does not end (something
    /// else at the URL) is refused at once instead of taking gigabytes of memory.
    /// </summary>
    private const int MaxAnswerBytes = 256 * 1024 * 1024;

    private readonly TimeSpan _requestTimeout;

    public ManagerClient(Uri baseAddress, string? apiKey, string? user, TimeSpan requestTimeout, HttpMessageHandler? handler = null)
    {
        // A trailing slash makes the base a directory: relative paths resolve under its path instead of replacing it.
        BaseAddress = baseAddress.AbsolutePath.EndsWith('/') ? baseAddress : new Uri(baseAddress.AbsoluteUri + "/");
        _requestTimeout = requestTimeout;
        // Redirects are not followed: HttpClient turns a redirected POST into a GET (a start became a 405 from another
        // address), and the manager never redirects its API; a redirect says where the manager is instead.
        _http = handler is null ? new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }) : new HttpClient(handler, disposeHandler: false);
        _http.BaseAddress = BaseAddress;
        _http.Timeout = Timeout.InfiniteTimeSpan; // per request instead: long polls and the event stream wait longer
        _http.MaxResponseContentBufferSize = MaxAnswerBytes;
        if (apiKey is { Length: > 0 })
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }

        if (user is { Length: > 0 })
        {
            _http.DefaultRequestHeaders.Add("X-User-Id", user);
        }
    }

    public Uri BaseAddress { get; }

    public Task<JsonElement> GetAsync(string path, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Get, Relative(path)), TimeSpan.Zero, cancellationToken);

    /// <summary>A long poll: the server holds it up to <paramref name="wait"/>, on top of the request timeout.</summary>
    public Task<JsonElement> GetAsync(string path, TimeSpan wait, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Get, Relative(path)), wait, cancellationToken);

    /// <summary>
    /// Request bodies are written with relaxed escaping: the default encoder wrote each <c>+</c> of a module's base64 as
    /// <c>\u002B</c> (6 bytes), so a module that passed the size check could make a body of up to six times its size.
    /// </summary>
    private static readonly JsonSerializerOptions BodyOptions = new(JsonSerializerDefaults.Web) { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A body of more than <see cref="SpecOptions.MaxRequestBytes"/> is a usage error (exit 2) before any request.</summary>
    public Task<JsonElement> PostAsync(string path, object? body, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, Relative(path));
        if (body is not null)
        {
            var bytes = JsonSerializer.SerializeToUtf8Bytes(body, body.GetType(), BodyOptions);
            if (bytes.Length > SpecOptions.MaxRequestBytes)
            {
                request.Dispose();
                throw new CliException(
                    string.Create(System.Globalization.CultureInfo.InvariantCulture, $"request too large: the body of POST {PathOf(request)} is {bytes.Length / (1024.0 * 1024):0.#} MiB, over the manager's request limit of {SpecOptions.MaxRequestBytes / (1024 * 1024)} MiB"),
                    CliException.Usage);
            }

            request.Content = new UploadContent(bytes);
        }

        return SendAsync(request, TimeSpan.Zero, cancellationToken);
    }

    /// <summary>A delete's answer is not read: the manager's is a 204, and an empty 200 (a proxy's rewrite of it) is as good.</summary>
    public Task<JsonElement> DeleteAsync(string path, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, Relative(path)), TimeSpan.Zero, cancellationToken, emptyAnswer: true);

    /// <summary>
    /// Opens <c>GET /events{query}</c>: returns once the answer's headers have arrived (the manager has subscribed by
    /// then), or throws as any request does. The request timeout covers the headers (and an error's body) only: the
    /// stream is open-ended.
    /// </summary>
    public async Task<EventStream> OpenEventsAsync(string query, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, Relative("/events" + query));
        HttpResponseMessage? response = null;
        try
        {
            // An error's body is read within the request timeout too (a proxy's 5xx whose body stalls was waited for until
            // the watch's own --timeout, exit 4).
            response = await WithinTimeoutAsync(
                request,
                TimeSpan.Zero,
                async (request, token) =>
                {
                    var answer = await TransportAsync(request, HttpCompletionOption.ResponseHeadersRead, token);
                    try
                    {
                        await ThrowIfErrorAsync(answer, token);
                        return answer;
                    }
                    catch
                    {
                        answer.Dispose();
                        throw;
                    }
                },
                cancellationToken);
            var body = await ReadAsync(request, () => response.Content.ReadAsStreamAsync(cancellationToken));
            return new EventStream(
                request,
                response,
                body,
                $"the manager at {BaseAddress} sent an event of more than {EventStream.MaxEventBytes / (1024 * 1024)} MiB on GET {PathOf(request)}: not an event of the manager's");
        }
        catch
        {
            response?.Dispose();
            request.Dispose();
            throw;
        }
    }

    public void Dispose() => _http.Dispose();

    /// <summary>A path relative to the base address (without its leading slash, which would drop the base's path).</summary>
    private static Uri Relative(string path) => new(path.TrimStart('/'), UriKind.Relative);

    private Task<JsonElement> SendAsync(HttpRequestMessage request, TimeSpan wait, CancellationToken cancellationToken, bool emptyAnswer = false) =>
        WithinTimeoutAsync(request, wait, async (request, token) =>
        {
            using (request)
            using (var response = await TransportAsync(request, HttpCompletionOption.ResponseContentRead, token))
            {
                await ThrowIfErrorAsync(response, token);
                var text = await ReadAsync(request, () => response.Content.ReadAsStringAsync(token));
                if (text.Length == 0)
                {
                    // A delete's answer (204) has no body; every other answer the CLI asks for is JSON, and an empty one read
                    // as nothing made `task start` say "started" and the rest fail with InvalidOperationException's text.
                    return emptyAnswer || response.StatusCode == HttpStatusCode.NoContent
                        ? default
                        : throw new CliException($"the manager at {BaseAddress} answered {request.Method} {PathOf(request)} with an empty body", CliException.Failed);
                }

                try
                {
                    return JsonDocument.Parse(text).RootElement.Clone();
                }
                catch (JsonException)
                {
                    throw new CliException($"the manager at {BaseAddress} answered {request.Method} {PathOf(request)} with a body that is not JSON: {Shorten(text)}", CliException.Failed);
                }
            }
        }, cancellationToken);

    /// <summary>The first <see cref="MaxErrorBytes"/> of an error's body (a streamed answer's is not capped by the
    /// client's buffer limit, and an error is shown shortened anyway).</summary>
    private static async Task<string> ReadErrorAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[MaxErrorBytes];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
        {
            length += read;
        }

        return Encoding.UTF8.GetString(buffer, 0, length);
    }

    private const int MaxErrorBytes = 64 * 1024;

    /// <summary>
    /// Runs <paramref name="call"/> with the request timeout (plus <paramref name="wait"/>): exit 3 when it runs out. A
    /// request body's upload is not counted against it: the timer starts again after each part of the body is sent (a
    /// large module over a slow link took longer than 30 s to send, and failed), so it limits a stalled upload and,
    /// after the last part, the wait for the answer (docs/cli.md).
    /// </summary>
    private async Task<T> WithinTimeoutAsync<T>(HttpRequestMessage request, TimeSpan wait, Func<HttpRequestMessage, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_requestTimeout + wait);
        if (request.Content is UploadContent upload)
        {
            var limit = _requestTimeout + wait;
            upload.Progress = () =>
            {
                try
                {
                    timeout.CancelAfter(limit);
                }
                catch (ObjectDisposedException)
                {
                    // the answer came before the body was all sent
                }
            };
        }

        try
        {
            return await call(request, timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new CliException(
                $"the manager at {BaseAddress} did not answer {request.Method} {PathOf(request)} within {SpecOptions.FormatDuration(_requestTimeout + wait)} (set --request-timeout or PROPELLER_REQUEST_TIMEOUT)",
                CliException.Unreachable);
        }
    }

    private async Task<HttpResponseMessage> TransportAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        try
        {
            return await _http.SendAsync(request, completion, cancellationToken);
        }
        catch (HttpRequestException ex) when (ex.HttpRequestError == HttpRequestError.ConfigurationLimitExceeded)
        {
            // Reported as any transport failure, it was "cannot reach the manager" (exit 3) after reading 2 GiB.
            throw new CliException($"the manager at {BaseAddress} answered {request.Method} {PathOf(request)} with more than {MaxAnswerBytes / (1024 * 1024)} MiB: not an answer of the manager's", CliException.Failed);
        }
        catch (HttpRequestException ex) when (request.Content is UploadContent { Sent: > 0 } upload && upload.Sent < upload.Length && upload.Length > LargeBody)
        {
            // The manager (or a proxy) refusing a large body answers 413 and closes the connection while it is sent.
            throw new CliException(
                $"the connection to the manager at {BaseAddress} broke while sending the {upload.Length / (1024 * 1024)} MiB body of {request.Method} {PathOf(request)} (a request too large for a proxy before it?): {ex.Message}",
                CliException.Unreachable);
        }
        catch (HttpRequestException ex)
        {
            throw new CliException($"cannot reach the manager at {BaseAddress}: {ex.Message} (set --url or PROPELLER_URL)", CliException.Unreachable);
        }
    }

    private const int LargeBody = 1024 * 1024;

    /// <summary>Reads a body: a connection lost on the way is the manager not answering (exit 3), not a crash.</summary>
    private async Task<T> ReadAsync<T>(HttpRequestMessage? request, Func<Task<T>> read)
    {
        try
        {
            return await read();
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            throw new CliException($"the connection to the manager at {BaseAddress} broke while reading the answer to {request?.Method} {(request is null ? "" : PathOf(request))}: {ex.Message}", CliException.Unreachable);
        }
    }

    private async Task ThrowIfErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        var request = response.RequestMessage;
        if ((int)response.StatusCode is >= 300 and < 400 && response.Headers.Location is { } location)
        {
            var target = location.IsAbsoluteUri ? location : new Uri(request?.RequestUri ?? BaseAddress, location);
            throw new CliException(
                $"the manager at {BaseAddress} answered {request?.Method} {(request is null ? "" : PathOf(request))} with a redirect ({(int)response.StatusCode}) to {target}: set --url or PROPELLER_URL to the manager's own address",
                CliException.Failed);
        }

        var text = await ReadAsync(request, () => ReadErrorAsync(response.Content, cancellationToken));
        if (response.StatusCode == HttpStatusCode.RequestEntityTooLarge)
        {
            throw new CliException(
                $"request too large: the manager at {BaseAddress} refused the body of {request?.Method} {(request is null ? "" : PathOf(request))} (413; its limit is {SpecOptions.MaxRequestBytes / (1024 * 1024)} MiB, a proxy's may be lower)",
                CliException.Usage);
        }

        var message = Shorten(text);
        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("error", out var error))
            {
                message = error.ValueKind == JsonValueKind.String ? error.GetString()! : error.GetRawText();
            }
        }
        catch (JsonException)
        {
            // not JSON: show the text as it is
        }

        throw new CliException($"{(int)response.StatusCode} {response.ReasonPhrase} from {request?.Method} {request?.RequestUri?.PathAndQuery}: {message}", CliException.Failed, response.StatusCode);
    }

    private string PathOf(HttpRequestMessage request) =>
        request.RequestUri is not { } uri ? "" : uri.IsAbsoluteUri ? uri.PathAndQuery : new Uri(BaseAddress, uri).PathAndQuery;

    private static string Shorten(string text)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length == 0 ? "(empty body)" : line.Length <= 300 ? line : line[..300] + "…";
    }

    /// <summary>A JSON body sent in parts, each reported to <see cref="Progress"/> (the request timeout starts again).</summary>
    private sealed class UploadContent : HttpContent
    {
        private const int Part = 64 * 1024;
        private readonly byte[] _body;

        public UploadContent(byte[] body)
        {
            _body = body;
            Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        }

        public Action? Progress { get; set; }

        public long Length => _body.Length;

        public long Sent { get; private set; }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            Sent = 0;
            for (var offset = 0; offset < _body.Length; offset += Part)
            {
                var part = Math.Min(Part, _body.Length - offset);
                await stream.WriteAsync(_body.AsMemory(offset, part), cancellationToken);
                Sent = offset + part;
                Progress?.Invoke();
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = _body.Length;
            return true;
        }
    }
}
