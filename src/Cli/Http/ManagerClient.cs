using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;

namespace Propeller.Cli.Http;

/// <summary>
/// The manager's HTTP API as the CLI uses it: JSON in and out, <c>{"error": ...}</c> bodies and transport failures
/// turned into <see cref="CliException"/>s that name the manager's address.
/// </summary>
internal sealed class ManagerClient : IDisposable
{
    private readonly HttpClient _http;

    public ManagerClient(Uri baseAddress, string? apiKey, string? user, HttpMessageHandler? handler = null)
    {
        BaseAddress = baseAddress;
        _http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
        _http.BaseAddress = baseAddress;
        _http.Timeout = Timeout.InfiniteTimeSpan; // long polls and the event stream wait; callers pass their own deadlines
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
        SendAsync(new HttpRequestMessage(HttpMethod.Get, path), cancellationToken);

    public Task<JsonElement> PostAsync(string path, object? body, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = body is null ? null : JsonContent.Create(body) }, cancellationToken);

    public Task<JsonElement> DeleteAsync(string path, CancellationToken cancellationToken) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, path), cancellationToken);

    /// <summary>The events of <c>GET /events{query}</c> until the stream ends or the token is cancelled.</summary>
    public async IAsyncEnumerable<SseItem<string>> EventsAsync(string query, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/events" + query);
        using var response = await TransportAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        await ThrowIfErrorAsync(response, cancellationToken);
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        await foreach (var item in SseParser.Create(stream).EnumerateAsync(cancellationToken))
        {
            yield return item;
        }
    }

    public void Dispose() => _http.Dispose();

    private async Task<JsonElement> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        using (request)
        using (var response = await TransportAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken))
        {
            await ThrowIfErrorAsync(response, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (text.Length == 0)
            {
                return default; // 204, or 200 with an empty body (results of a task without any)
            }

            try
            {
                return JsonDocument.Parse(text).RootElement.Clone();
            }
            catch (JsonException)
            {
                throw new CliException($"the manager at {BaseAddress} answered {request.Method} {request.RequestUri} with a body that is not JSON: {Shorten(text)}", CliException.Failed);
            }
        }
    }

    private async Task<HttpResponseMessage> TransportAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        try
        {
            return await _http.SendAsync(request, completion, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new CliException($"cannot reach the manager at {BaseAddress}: {ex.Message} (set --url or PROPELLER_URL)", CliException.Unreachable);
        }
    }

    private static async Task ThrowIfErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        var text = await response.Content.ReadAsStringAsync(cancellationToken);
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

        var request = response.RequestMessage;
        throw new CliException($"{(int)response.StatusCode} {response.ReasonPhrase} from {request?.Method} {request?.RequestUri?.PathAndQuery}: {message}", CliException.Failed);
    }

    private static string Shorten(string text)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length == 0 ? "(empty body)" : line.Length <= 300 ? line : line[..300] + "…";
    }
}
