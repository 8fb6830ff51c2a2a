using System.Net.Http.Headers;
using System.Text.Json;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Messaging;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Fetching;

/// <summary>
/// Gets a task's binary (spec §2.2): inline base64 <c>file</c>; an http(s) <c>image_url</c> by GET (30 s, status,
/// content type and size checks); any other <c>image_url</c> through the proxy: a <c>registry/proplet</c> request, then
/// the chunks on <c>registry/server</c>, or, from our proxy, which every request asks for binary chunks (<c>formats</c>),
/// on <c>registry/chunk</c>. Failures are <see cref="FetchException"/> with the message for the result.
/// </summary>
public sealed class BinaryFetcher(PropletSettings settings, ChunkAssembler chunks, IPropletPublisher publisher, HttpClient http)
{
    private static readonly string[] BinaryFormats = [RegistryRequestMessage.BinaryFormat];
    private long _fetchedBytes;

    /// <summary>Bytes obtained over HTTP or from chunks (proplet_wasm_fetch_bytes_total).</summary>
    public long FetchedBytes => Interlocked.Read(ref _fetchedBytes);

    public async Task<FetchedBinary> FetchAsync(StartRequest request, CancellationToken cancellationToken)
    {
        var fetched = await GetAsync(request, cancellationToken);
        if (request.Message.File is not { Length: > 0 })
        {
            Interlocked.Add(ref _fetchedBytes, fetched.Bytes.Length);
        }

        return fetched;
    }

    /// <summary>
    /// Throws <see cref="FetchException"/> when an inline module's text decodes to more than PROPLET_MAX_BINARY_SIZE:
    /// capped as a download and an assembly are (an inline module is bounded by the broker's packet size too, but that
    /// is set apart, and may be the larger). The text's length bounds the bytes (white space only lowers them): most
    /// modules are not scanned. Checked before the start waits for a slot too, so an oversized module neither queues
    /// against PROPLET_MAX_WAITING_BYTES nor is refused as "busy".
    /// </summary>
    public void CheckInlineSize(string file)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (file.Length / 4 * 3L > settings.MaxBinarySize && DecodedLength(file) is var length && length > settings.MaxBinarySize)
        {
            throw new FetchException($"the inline wasm file of {length} bytes is larger than PROPLET_MAX_BINARY_SIZE ({settings.MaxBinarySize} bytes)");
        }
    }

    private async Task<FetchedBinary> GetAsync(StartRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Message.File is { Length: > 0 } file)
        {
            cancellationToken.ThrowIfCancellationRequested(); // nothing below waits: a stopped task's module is not decoded
            CheckInlineSize(file);
            try
            {
                return new FetchedBinary(Convert.FromBase64String(file), null);
            }
            catch (FormatException ex)
            {
                throw new FetchException($"Failed to decode the base64 file: {ex.Message}", ex);
            }
        }

        if (request.Message.ImageUrl is not { Length: > 0 } url)
        {
            throw new FetchException("No wasm binary or image URL provided");
        }

        if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            return new FetchedBinary(await DownloadAsync(url, cancellationToken), null);
        }

        try
        {
            // A stalled assembly asks again for only the chunks it lacks (docs/proxy.md); the original proxy ignores the
            // list and sends everything, which the assembler takes as duplicates. The first request names the images
            // held verified (have): our proxy then sends one chunk of a held one, enough to announce its sha256. Every
            // request announces binary chunks (formats): our proxy sends raw bytes on registry/chunk, the original ignores
            // the field and sends JSON, and the assembler takes either (issue 17).
            return await chunks.WaitAsync(
                url,
                (missing, ct) => publisher.PublishAsync(
                    Topics.RegistryRequest,
                    JsonSerializer.SerializeToUtf8Bytes(new RegistryRequestMessage(url) { Chunks = missing, Have = missing is null ? chunks.HeldDigests() : null, Formats = BinaryFormats }),
                    ct),
                settings.ChunkWait,
                settings.ChunkStall,
                cancellationToken);
        }
        catch (TimeoutException ex)
        {
            throw new FetchException(ex.Message, ex);
        }
        catch (InvalidDataException ex)
        {
            throw new FetchException(ex.Message, ex);
        }
    }

    /// <summary>The bytes base64 <paramref name="text"/> decodes to (as <see cref="Convert.FromBase64String"/> reads it:
    /// white space skipped, '=' padding at the end), without decoding it; malformed text is left to the decoder.</summary>
    private static long DecodedLength(string text)
    {
        long characters = 0;
        var padding = 0;
        foreach (var c in text)
        {
            if (char.IsWhiteSpace(c))
            {
                continue;
            }

            characters++;
            padding = c == '=' ? padding + 1 : 0;
        }

        return (characters / 4 * 3) - Math.Min(padding, 2);
    }

    private async Task<byte[]> DownloadAsync(string url, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            if (!response.IsSuccessStatusCode)
            {
                throw new FetchException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase} fetching wasm from {url}");
            }

            if (response.Content.Headers.ContentType is MediaTypeHeaderValue { MediaType: { } type }
                && !type.Contains("application/wasm", StringComparison.OrdinalIgnoreCase)
                && !type.Contains("application/octet-stream", StringComparison.OrdinalIgnoreCase))
            {
                throw new FetchException($"unexpected Content-Type '{type}' fetching wasm from {url}");
            }

            if (response.Content.Headers.ContentLength > settings.MaxBinarySize)
            {
                throw new FetchException($"wasm at {url} is larger than {settings.MaxBinarySize} bytes");
            }

            await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
            using var buffer = new MemoryStream();
            var block = new byte[81920];
            int read;
            while ((read = await body.ReadAsync(block, timeout.Token)) > 0)
            {
                if (buffer.Length + read > settings.MaxBinarySize)
                {
                    throw new FetchException($"wasm at {url} is larger than {settings.MaxBinarySize} bytes");
                }

                await buffer.WriteAsync(block.AsMemory(0, read), timeout.Token);
            }

            return buffer.ToArray();
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new FetchException($"timed out fetching wasm from {url}", ex);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or UriFormatException)
        {
            // IOException: the connection lost in the middle of the body (HttpIOException), not only before the answer.
            // UriFormatException: an image_url that is not a URL (http://[::1, a port over 65535); it failed the task as
            // "internal proplet error", logged as a crash.
            throw new FetchException($"error fetching wasm from {url}: {ex.Message}", ex);
        }
    }
}
