using System.Buffers;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Propeller.Contracts.Json;
using Propeller.Contracts.Mqtt;

namespace Propeller.Edge.Fetching;

/// <summary>
/// Assembles <c>registry/server</c> chunks by <c>app_name</c> (spec §3.1): the first chunk fixes <c>total_chunks</c>,
/// duplicates are ignored (first copy wins), completion = all indices present, chunks are joined in index order.
/// Added checks: an index outside 0..total-1, a non-positive or huge total, bad base64 or an assembly over the size
/// cap are rejected (with a reason). Waiters are woken on completion instead of polling every 5 s. Entries whose first
/// chunk is older than the TTL are dropped by <see cref="Sweep"/>. Thread-safe.
/// Beyond the original (docs/proxy.md): chunks may carry the artefact's <c>sha256</c>, and a complete assembly that does
/// not match it fails its waiters instead of reaching the runtime; the proxy's <c>registry/failure</c> fails them at once
/// (<see cref="Fail"/>); a waiter whose assembly stalls asks again for the missing chunks only, and one that has had no
/// chunk at all asks again for everything. Chunks that announce the artefact's <c>size</c> (ours, additive) are decoded
/// straight into one array of that size (issue 17: no array per chunk, no joining copy); the others are kept per chunk and joined at the end, as before. Verified images are kept by
/// their sha256 up to <paramref name="imageCacheBytes"/> (<see cref="VerifiedImages"/>): a delivery that announces a
/// digest held there serves its waiters at its first chunk, and the rest of its chunks are dropped undecoded. Binary
/// chunks (<c>registry/chunk</c>, <see cref="AddBinary"/>) are the same chunks without base64 and take the same path:
/// one assembly per <c>app_name</c>, whichever format its chunks came in. Rejected chunks are counted
/// (<see cref="Rejected"/>).
/// </summary>
public sealed class ChunkAssembler(long maxBinarySize, TimeProvider time, long imageCacheBytes = 0)
{
    /// <summary>The largest image allocated whole at its first chunk when nobody waits for it yet (see Add).</summary>
    internal const long UnclaimedImageCap = 1 << 20;

    private const int MaxChunks = 100_000;
    private const int MaxReRequested = 10_000;
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<TaskCompletionSource<FetchedBinary>>> _waiters = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly VerifiedImages _verified = new(imageCacheBytes);
    private long _rejected;
    private long _evicted;

    /// <summary>Chunks rejected so far (malformed, inconsistent with their assembly, or completing one that failed
    /// verification): proplet_chunks_rejected_total.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Entries currently held (partial, or complete and unclaimed).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Adds a chunk; returns null when accepted (or a harmless duplicate), else why it was rejected.</summary>
    public string? Add(ChunkMessage chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        if (Check(chunk.AppName, chunk.ChunkIndex, chunk.TotalChunks) is { } problem)
        {
            return Counted(problem);
        }

        byte[] data;
        try
        {
            data = Convert.FromBase64String(chunk.Data ?? "");
        }
        catch (FormatException ex)
        {
            return Counted($"data is not valid base64: {ex.Message}");
        }

        return Counted(Add(chunk.AppName!, chunk.ChunkIndex, chunk.TotalChunks, chunk.Sha256, chunk.Size, data, base64: false));
    }

    /// <summary>Adds a <c>registry/chunk</c> payload (<see cref="BinaryChunkHeader"/>): a one-line JSON header, a newline,
    /// then exactly <c>length</c> raw bytes, copied straight into the assembly. Returns null when accepted, else why it
    /// was rejected (no header line, a header that is not the expected JSON, a byte count other than the header's).</summary>
    public string? AddBinary(ReadOnlySpan<byte> payload)
    {
        var end = payload.IndexOf(BinaryChunkHeader.Separator);
        if (end < 0)
        {
            return Counted("the binary chunk has no header line");
        }

        BinaryChunkHeader? header;
        try
        {
            header = JsonSerializer.Deserialize<BinaryChunkHeader>(payload[..end]);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return Counted($"the binary chunk's header is not valid JSON of the expected shape: {JsonProblem.Describe(ex, typeof(BinaryChunkHeader), JsonSerializerOptions.Default)}");
        }

        var data = payload[(end + 1)..];
        if (header is null)
        {
            return Counted("the binary chunk's header is null");
        }

        // As in AddJson: a header without chunk_idx (or total_chunks) was read as chunk 0 (of 0).
        if (MissingCount(payload[..end]) is { } missing)
        {
            return Counted($"{missing} is required");
        }

        if (header.Length != data.Length)
        {
            return Counted($"the binary chunk carries {data.Length} bytes, its header says {header.Length}");
        }

        return Counted(Check(header.AppName, header.ChunkIndex, header.TotalChunks)
            ?? Add(header.AppName!, header.ChunkIndex, header.TotalChunks, header.Sha256, header.Size, data, base64: false));
    }

    /// <summary>Adds a <c>registry/server</c> payload read straight from its UTF-8 JSON: <c>data</c> is decoded from the
    /// JSON token (no 1.4 MB string per 512 KB chunk, as deserialising <see cref="ChunkMessage"/> makes). Unknown fields
    /// are skipped. Returns null when accepted, else why it was rejected.</summary>
    public string? AddJson(ReadOnlySpan<byte> json)
    {
        string? app = null;
        string? sha256 = null;
        long? size = null;
        int? index = null, total = null;
        byte[]? data = null;
        var base64 = ReadOnlySpan<byte>.Empty;
        var hasData = false;
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return Counted("the chunk is not a JSON object");
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var field = reader.ValueTextEquals("app_name"u8) ? 1 : reader.ValueTextEquals("chunk_idx"u8) ? 2 : reader.ValueTextEquals("total_chunks"u8) ? 3
                    : reader.ValueTextEquals("data"u8) ? 4 : reader.ValueTextEquals("sha256"u8) ? 5 : reader.ValueTextEquals("size"u8) ? 6 : 0;
                reader.Read();
                switch (field)
                {
                    case 1:
                        app = reader.TokenType == JsonTokenType.Null ? null : reader.GetString();
                        break;
                    case 2 or 3:
                        // A number out of Int32's range was read as a FormatException, "data is not valid base64" (another
                        // token throws as before: not the expected shape).
                        if (!reader.TryGetInt32(out var number))
                        {
                            return Counted($"{(field == 2 ? "chunk_idx" : "total_chunks")} {Encoding.UTF8.GetString(reader.ValueSpan)} is out of range");
                        }

                        if (field == 2)
                        {
                            index = number;
                        }
                        else
                        {
                            total = number;
                        }

                        break;
                    case 4:
                        hasData = true;
                        // A plain token is decoded later, straight into its place; escaped or split ones the reader's way.
                        data = reader.TokenType == JsonTokenType.Null ? []
                            : reader.TokenType != JsonTokenType.String || reader.HasValueSequence || reader.ValueIsEscaped ? reader.GetBytesFromBase64() : null;
                        base64 = data is null ? reader.ValueSpan : [];
                        break;
                    case 5:
                        sha256 = reader.TokenType == JsonTokenType.Null ? null : reader.GetString();
                        break;
                    case 6:
                        if (reader.TokenType == JsonTokenType.Null)
                        {
                            size = null;
                        }
                        else if (reader.TryGetInt64(out var bytes))
                        {
                            size = bytes;
                        }
                        else
                        {
                            return Counted($"size {Encoding.UTF8.GetString(reader.ValueSpan)} is out of range");
                        }

                        break;
                    default:
                        reader.Skip();
                        break;
                }
            }
        }
        catch (FormatException ex)
        {
            return Counted($"data is not valid base64: {ex.Message}");
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return Counted($"the chunk is not valid JSON of the expected shape: {ex.Message}");
        }

        // A chunk without its index (or count) was taken as chunk 0 (of 0), and as the first copy of a chunk wins, the
        // real chunk 0 was then dropped as its duplicate: the image assembled with the wrong bytes, or failed.
        if (index is null || total is null)
        {
            return Counted($"{(index is null ? "chunk_idx" : "total_chunks")} is required");
        }

        if (!hasData)
        {
            // Not an empty chunk (the original sends "data" always, null for nothing): a chunk without its bytes.
            return Counted("the chunk has no data");
        }

        return Counted(Check(app, index.Value, total.Value)
            ?? (data is null ? Add(app!, index.Value, total.Value, sha256, size, base64, base64: true) : Add(app!, index.Value, total.Value, sha256, size, data, base64: false)));
    }

    /// <summary>"chunk_idx" or "total_chunks" when the header (valid JSON, an object) does not name it; else null.</summary>
    private static string? MissingCount(ReadOnlySpan<byte> header)
    {
        bool index = false, total = false;
        var reader = new Utf8JsonReader(header);
        reader.Read();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            index |= reader.ValueTextEquals("chunk_idx"u8);
            total |= reader.ValueTextEquals("total_chunks"u8);
            reader.Read();
            reader.Skip();
        }

        return !index ? "chunk_idx" : !total ? "total_chunks" : null;
    }

    /// <summary>Counts <paramref name="rejection"/> when there is one, and returns it.</summary>
    private string? Counted(string? rejection)
    {
        if (rejection is not null)
        {
            Interlocked.Increment(ref _rejected);
        }

        return rejection;
    }

    /// <summary>The length of what <paramref name="base64"/> decodes to (standard alphabet with padding).</summary>
    private static int DecodedLength(ReadOnlySpan<byte> base64)
    {
        var padding = base64.EndsWith("=="u8) ? 2 : base64.EndsWith("="u8) ? 1 : 0;
        return Math.Max(0, Base64.GetMaxDecodedFromUtf8Length(base64.Length) - padding);
    }

    /// <summary>Decodes <paramref name="base64"/> into <paramref name="destination"/>, exactly its decoded length.</summary>
    private static void Decode(ReadOnlySpan<byte> base64, Span<byte> destination)
    {
        if (Base64.DecodeFromUtf8(base64, destination, out _, out var written) != OperationStatus.Done || written != destination.Length)
        {
            throw new FormatException("The input is not a valid Base-64 string (standard alphabet with padding).");
        }
    }

    private static string? Check(string? app, int index, int total)
    {
        if (app is not { Length: > 0 })
        {
            return "app_name is required";
        }

        if (total is <= 0 or > MaxChunks)
        {
            return $"total_chunks {total} is out of range 1..{MaxChunks}";
        }

        return index < 0 || index >= total ? $"chunk_idx {index} is out of range 0..{total - 1}" : null;
    }

    /// <summary>What the assemblies nobody waits for may hold together (every chunk is broadcast on the channel, so a
    /// proplet assembles the images the others ask for too): twice PROPLET_MAX_BINARY_SIZE. Before, only each one was
    /// bounded, and ten 100 MiB images asked for elsewhere within the TTL held 1 GB on every proplet.</summary>
    internal long UnclaimedBound => 2 * maxBinarySize;

    /// <summary>Assemblies dropped to keep those nobody waits for within <see cref="UnclaimedBound"/>.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    /// <summary>Drops the oldest assemblies nobody waits for (not <paramref name="current"/>, whose chunk just came, unless
    /// it alone is over) until those left are within <see cref="UnclaimedBound"/>. Under the lock.</summary>
    private void EvictUnclaimedOverBound(string current)
    {
        long total = 0;
        foreach (var (app, entry) in _entries)
        {
            if (!_waiters.ContainsKey(app))
            {
                total += entry.Bytes;
            }
        }

        if (total <= UnclaimedBound)
        {
            return;
        }

        var oldestFirst = _entries.Where(e => !_waiters.ContainsKey(e.Key)).OrderBy(e => e.Key == current).ThenBy(e => e.Value.CreatedAt).ToList();
        foreach (var (app, entry) in oldestFirst)
        {
            if (total <= UnclaimedBound)
            {
                break;
            }

            _entries.Remove(app);
            total -= entry.Bytes;
            Interlocked.Increment(ref _evicted);
        }
    }

    /// <summary>Verified images held by their sha256 (bytes), for tests and metrics.</summary>
    public long VerifiedBytes
    {
        get
        {
            lock (_lock)
            {
                return _verified.Bytes;
            }
        }
    }

    /// <summary>The sha256 of the verified images held (most recently used first, at most 16), for a request's
    /// <c>have</c>; null when none.</summary>
    public IReadOnlyList<string>? HeldDigests()
    {
        lock (_lock)
        {
            return _verified.Digests(16) is { Count: > 0 } digests ? digests : null;
        }
    }

    /// <summary>Adds chunk <paramref name="index"/>: <paramref name="data"/>, its bytes, or, when <paramref name="base64"/>,
    /// their base64 text, decoded here (into the entry's image when the chunks announced its size).</summary>
    private string? Add(string app, int index, int total, string? sha256, long? size, ReadOnlySpan<byte> data, bool base64)
    {
        if (TakeKnown(app, index, total, sha256, size, out var served, out var known))
        {
            foreach (var waiter in served ?? [])
            {
                waiter.TrySetResult(known!);
            }

            return null;
        }

        List<TaskCompletionSource<FetchedBinary>>? waiters = null;
        FetchedBinary? assembled = null;
        string? failure = null;
        var tooLarge = false;
        lock (_lock)
        {
            var created = false;
            // The whole image is allocated at the first chunk only for a name someone waits for, or a small one: the
            // first chunk of any name, 200 bytes announcing 100 MiB, would otherwise reserve 100 MiB for the TTL. Others
            // keep their chunks as they come (memory as large as what arrived) and are joined at the end.
            var imageCap = _waiters.ContainsKey(app) ? maxBinarySize : Math.Min(maxBinarySize, UnclaimedImageCap);
            if (!_entries.TryGetValue(app, out var entry))
            {
                entry = new Entry(total, time.GetUtcNow(), sha256, size, imageCap);
                _entries[app] = entry;
                created = true;
            }

            if (!created && sha256 is not null && entry.Sha256 is not null && !string.Equals(sha256, entry.Sha256, StringComparison.OrdinalIgnoreCase))
            {
                // Another artefact under the same name: the newer delivery wins, over an incomplete assembly (our proxy,
                // serving a cached tag that moved meanwhile, withholds the old artefact's last chunk and sends the new one)
                // and over one assembled that nobody claimed yet (the tag moved since: before, its chunks were dropped as a
                // re-delivery and a task within the TTL got the old image without asking the proxy).
                entry = new Entry(total, time.GetUtcNow(), sha256, size, imageCap);
                _entries[app] = entry;
                created = true;
            }
            else if (entry.Complete is not null)
            {
                return null; // a re-delivery of an image already assembled
            }

            if (entry.Total != total)
            {
                return $"total_chunks {total} differs from the first chunk's {entry.Total}";
            }

            entry.Sha256 ??= sha256;

            if (size is not null && entry.AnnouncedSize is { } announced && size != announced)
            {
                return $"size {size} differs from the first chunk's {announced}";
            }

            if (entry.Has(index))
            {
                return null;
            }

            try
            {
                var length = base64 ? DecodedLength(data) : data.Length;
                if (entry.Place(index, length) is { } offset)
                {
                    var target = entry.Image.AsSpan((int)offset, length);
                    if (base64)
                    {
                        Decode(data, target);
                    }
                    else
                    {
                        data.CopyTo(target);
                    }

                    entry.Commit(index, length);
                }
                else
                {
                    var part = GC.AllocateUninitializedArray<byte>(length);
                    if (base64)
                    {
                        Decode(data, part);
                    }
                    else
                    {
                        data.CopyTo(part);
                    }

                    entry.Parts[index] = part;
                    entry.Size += length;
                }
            }
            catch (FormatException ex)
            {
                if (created)
                {
                    _entries.Remove(app); // a bad first chunk leaves nothing behind
                }

                return $"data is not valid base64: {ex.Message}";
            }

            entry.LastArrival = time.GetTimestamp();
            if (entry.Size > maxBinarySize)
            {
                _entries.Remove(app);
                _waiters.Remove(app, out waiters);
                failure = $"image {app} is larger than the {maxBinarySize} byte limit";
                tooLarge = true;
            }
            else if (entry.Received < entry.Total)
            {
                if (!_waiters.ContainsKey(app))
                {
                    EvictUnclaimedOverBound(app); // only an assembly nobody waits for adds to what they hold
                }

                return null;
            }
            else
            {
                assembled = Assemble(app, entry, out failure);
                if (failure is not null)
                {
                    _entries.Remove(app);
                    _waiters.Remove(app, out waiters);
                }
                else
                {
                    _verified.Add(assembled); // kept only when it was checked against a sha256
                    if (_waiters.Remove(app, out waiters))
                    {
                        _entries.Remove(app);
                    }
                    else
                    {
                        // Nobody asked (yet): keep it for a request that comes within the TTL (spec §3.2).
                        entry.Complete = assembled;
                        entry.Parts.Clear();
                        entry.Image = null;
                        EvictUnclaimedOverBound(app);
                    }
                }
            }
        }

        foreach (var waiter in waiters ?? [])
        {
            if (failure is null)
            {
                waiter.TrySetResult(assembled!);
            }
            else
            {
                waiter.TrySetException(new InvalidDataException(failure));
            }
        }

        return tooLarge ? $"assembly exceeds {maxBinarySize} bytes; dropped" : failure;
    }

    /// <summary>
    /// The shortcut through <see cref="VerifiedImages"/>, decided from the chunk's header alone: a chunk of a delivery
    /// whose image was already served from there is dropped (the entry goes once every index went by); the first chunk
    /// of a delivery that announces a held sha256 (and, if announced, its size) completes the waiters with the held
    /// image, or, when nobody waits, leaves it complete for a request within the TTL (as an assembled one). Returns
    /// false when the chunk takes the ordinary path.
    /// </summary>
    private bool TakeKnown(
        string app, int index, int total, string? sha256, long? size, out List<TaskCompletionSource<FetchedBinary>>? waiters, out FetchedBinary? image)
    {
        waiters = null;
        image = null;
        lock (_lock)
        {
            if (_entries.TryGetValue(app, out var entry))
            {
                if (!entry.Served)
                {
                    return false;
                }

                if (sha256 is null || string.Equals(sha256, entry.Sha256, StringComparison.OrdinalIgnoreCase))
                {
                    if (entry.Pass(index))
                    {
                        _entries.Remove(app);
                    }

                    return true;
                }

                _entries.Remove(app); // another artefact under this name (its tag moved): a delivery of its own
            }

            if (sha256 is null || !_verified.TryGet(sha256, size, out var known))
            {
                return false;
            }

            image = known;
            entry = new Entry(total, time.GetUtcNow(), known.Sha256, null, maxBinarySize) { LastArrival = time.GetTimestamp() };
            if (_waiters.Remove(app, out waiters))
            {
                entry.Served = true;
                if (!entry.Pass(index))
                {
                    _entries[app] = entry;
                }
            }
            else
            {
                entry.Complete = known;
                _entries[app] = entry;
            }

            return true;
        }
    }

    /// <summary>The proxy reported that it cannot deliver <paramref name="app"/> (<c>registry/failure</c>): its waiters
    /// fail with <paramref name="reason"/> and a partial assembly is dropped. Returns how many waited.</summary>
    public int Fail(string app, string reason)
    {
        ArgumentNullException.ThrowIfNull(app);
        List<TaskCompletionSource<FetchedBinary>>? waiters;
        lock (_lock)
        {
            if (_entries.TryGetValue(app, out var entry) && entry.Complete is null)
            {
                _entries.Remove(app);
            }

            _waiters.Remove(app, out waiters);
        }

        foreach (var waiter in waiters ?? [])
        {
            waiter.TrySetException(new InvalidDataException(reason));
        }

        return waiters?.Count ?? 0;
    }

    /// <summary>Waits for the image <paramref name="app"/>: at once when a complete copy is held, else until its chunks
    /// arrive. <paramref name="request"/> is called (once) after the waiter is registered, to ask the proxy.</summary>
    public Task<FetchedBinary> WaitAsync(string app, Func<CancellationToken, Task> request, TimeSpan timeout, CancellationToken cancellationToken) =>
        WaitAsync(app, (_, ct) => request(ct), timeout, Timeout.InfiniteTimeSpan, cancellationToken);

    /// <summary>As <see cref="WaitAsync(string, Func{CancellationToken, Task}, TimeSpan, CancellationToken)"/>; besides,
    /// whenever a partial assembly has gone <paramref name="stall"/> without a new chunk, <paramref name="request"/> is
    /// called again with the missing indices (the first call gets null: everything). When no chunk of the image has come
    /// at all (the request or its answer lost, e.g. while the proxy restarted), it is called again with null after one
    /// stall, then after two more, four more, and so on: a proxy still pulling a slow image is not asked every stall
    /// (the original proxy pulls again for every request).</summary>
    public async Task<FetchedBinary> WaitAsync(
        string app, Func<IReadOnlyList<int>?, CancellationToken, Task> request, TimeSpan timeout, TimeSpan stall, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        // Before the complete image is taken (returned without a wait): a cancelled fetch leaves it to the next waiter.
        cancellationToken.ThrowIfCancellationRequested();
        var waiter = new TaskCompletionSource<FetchedBinary>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_entries.TryGetValue(app, out var entry) && entry.Complete is { } ready)
            {
                _entries.Remove(app);
                return ready;
            }

            if (entry is { Served: true })
            {
                _entries.Remove(app); // that delivery served an earlier waiter; this one asks the proxy again
            }

            if (!_waiters.TryGetValue(app, out var list))
            {
                list = [];
                _waiters[app] = list;
            }

            list.Add(waiter);
        }

        try
        {
            // The wait for chunks starts once the proxy has been asked: a request held up by the broker (published once
            // it is back) still gets the whole wait. Each request is bounded by the wait too (a broker that refuses it
            // is retried until cancelled), so a fetch never hangs on one.
            await AskAsync(request, null, timeout, cancellationToken);
            var started = time.GetTimestamp();
            var askedInFull = started;
            var nextInFull = stall;
            while (true)
            {
                var remaining = timeout - time.GetElapsedTime(started);
                var slice = stall == Timeout.InfiniteTimeSpan || stall >= remaining ? remaining : stall;
                try
                {
                    return await waiter.Task.WaitAsync(slice > TimeSpan.Zero ? slice : TimeSpan.Zero, time, cancellationToken);
                }
                catch (TimeoutException) when (slice < remaining)
                {
                    if (!Stalled(app, stall, out var missing))
                    {
                        continue;
                    }

                    if (missing is not null)
                    {
                        await AskAsync(request, missing, remaining - slice, cancellationToken);
                    }
                    else if (time.GetElapsedTime(askedInFull) >= nextInFull)
                    {
                        askedInFull = time.GetTimestamp();
                        nextInFull += nextInFull;
                        await AskAsync(request, null, remaining - slice, cancellationToken);
                    }
                }
            }
        }
        catch (TimeoutException ex) when (ex is not AskTimeoutException)
        {
            throw new TimeoutException("Timeout waiting for binary chunks", ex);
        }
        finally
        {
            lock (_lock)
            {
                if (_waiters.TryGetValue(app, out var list) && list.Remove(waiter) && list.Count == 0)
                {
                    _waiters.Remove(app);
                }
            }
        }
    }

    /// <summary>Calls <paramref name="request"/>, giving up after <paramref name="limit"/>.</summary>
    private static async Task AskAsync(
        Func<IReadOnlyList<int>?, CancellationToken, Task> request, IReadOnlyList<int>? missing, TimeSpan limit, CancellationToken cancellationToken)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(limit > TimeSpan.Zero ? limit : TimeSpan.Zero); // real time, as the broker's retries
        try
        {
            await request(missing, bounded.Token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AskTimeoutException(
                string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Timeout asking the proxy for binary chunks: the request could not be sent within {limit.TotalSeconds:0.###} s"), ex);
        }
    }

    /// <summary>A request to the proxy that could not be sent in time (not a wait for chunks).</summary>
    private sealed class AskTimeoutException(string message, Exception inner) : TimeoutException(message, inner);

    /// <summary>Drops entries whose first chunk is older than <paramref name="ttl"/>; returns what was dropped
    /// (app name, chunks received, total) for logging.</summary>
    public IReadOnlyList<(string App, int Received, int Total)> Sweep(TimeSpan ttl)
    {
        var now = time.GetUtcNow();
        var dropped = new List<(string, int, int)>();
        lock (_lock)
        {
            // Not an assembly a task waits for: its wait (PROPLET_CHUNK_WAIT) ends it; a TTL shorter than that wait
            // dropped the chunks received so far, and the fetch asked for them all again or ran out of time.
            foreach (var (app, entry) in _entries.Where(e => now - e.Value.CreatedAt > ttl && !_waiters.ContainsKey(e.Key)).ToList())
            {
                _entries.Remove(app);
                if (!entry.Served)
                {
                    dropped.Add((app, entry.Complete is null ? entry.Received : entry.Total, entry.Total));
                }
            }
        }

        return dropped;
    }

    /// <summary>Whether the image should be asked for again after a quiet <paramref name="stall"/>: with
    /// <paramref name="missing"/> the indices a partial assembly lacks when no chunk came for that long, or null when no
    /// chunk of it has come at all (nothing held: everything). False while chunks come, and for an assembly that is
    /// complete or was served from a held image.</summary>
    private bool Stalled(string app, TimeSpan stall, out List<int>? missing)
    {
        missing = null;
        lock (_lock)
        {
            if (!_entries.TryGetValue(app, out var entry))
            {
                return true;
            }

            if (entry.Complete is not null || entry.Served || time.GetElapsedTime(entry.LastArrival) < stall)
            {
                return false;
            }

            missing = [];
            for (var i = 0; i < entry.Total && missing.Count < MaxReRequested; i++)
            {
                if (!entry.Has(i))
                {
                    missing.Add(i);
                }
            }

            entry.LastArrival = time.GetTimestamp(); // the next re-request only after another quiet stall
            return missing.Count > 0;
        }
    }

    /// <summary>A complete entry's image (its chunks joined in index order, unless they were decoded into it), checked
    /// against the sha256 the chunks carried; the digest goes with the image, so that the compile cache need not hash it
    /// again.</summary>
    private static FetchedBinary Assemble(string app, Entry entry, out string? failure)
    {
        failure = null;
        var assembled = entry.Image;
        if (assembled is null)
        {
            assembled = GC.AllocateUninitializedArray<byte>((int)entry.Size);
            var offset = 0;
            foreach (var part in entry.Parts.Values)
            {
                part.CopyTo(assembled, offset);
                offset += part.Length;
            }
        }

        if (entry.Sha256 is not { } expected)
        {
            return new FetchedBinary(assembled, null);
        }

        var actual = Convert.ToHexStringLower(entry.TakeHash() ?? SHA256.HashData(assembled));
        if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
        {
            failure = $"image {app} failed verification: its chunks hash to sha256 {actual}, the proxy sent sha256 {expected} (a chunk was corrupted)";
        }

        return new FetchedBinary(assembled, actual);
    }

    private sealed class Entry(int total, DateTimeOffset createdAt, string? sha256, long? size, long imageCap)
    {
        private bool[]? _have;
        private int _received;
        private int _chunkLength = -1;
        private int _lastLength = -1;

        // The sha256 of the image's chunks 0.._hashed-1, fed as each chunk completes that prefix: the digest is ready
        // when the last chunk lands, instead of hashing the whole image after it (~3 ms per 5 MiB on the delivery's
        // critical path). Only for images decoded in place and a delivery that announced a sha256. An entry dropped
        // before it completes leaves its hash state to the SafeHandle's finalizer.
        private IncrementalHash? _hash;
        private int _hashed;

        public int Total { get; } = total;

        public DateTimeOffset CreatedAt { get; } = createdAt;

        public string? Sha256 { get; set; } = sha256;

        /// <summary>The artefact's size as the first chunk announced it (null: not announced).</summary>
        public long? AnnouncedSize { get; } = size;

        public long LastArrival { get; set; }

        /// <summary>Chunks kept one by one (no size announced, or chunks that did not fit it), joined at the end.</summary>
        public SortedDictionary<int, byte[]> Parts { get; } = [];

        /// <summary>The artefact, its chunks decoded into place: chunk i &lt; total-1 at i × the chunk length, the last
        /// one at the end; allocated when the first chunk announces a plausible size within the cap.</summary>
        public byte[]? Image { get; set; } = size is { } s && s <= imageCap && s >= 0 && s <= Array.MaxLength && (s > 0 || total == 1) && total <= Math.Max(1, s)
            ? GC.AllocateUninitializedArray<byte>((int)s)
            : null;

        /// <summary>Bytes received (and kept).</summary>
        public long Size { get; set; }

        public int Received => Image is null ? Parts.Count : _received;

        public FetchedBinary? Complete { get; set; }

        /// <summary>What it holds in memory: the assembled image, or the array it is decoded into, or its parts.</summary>
        public long Bytes => Complete?.Bytes.LongLength ?? Math.Max(Image?.LongLength ?? 0, Size);

        /// <summary>Its waiters were served a held verified image at the first chunk; the rest of the delivery only goes by
        /// (<see cref="Pass"/>).</summary>
        public bool Served { get; set; }

        public bool Has(int index) => Image is null ? Parts.ContainsKey(index) : _have?[index] == true;

        /// <summary>Where chunk <paramref name="index"/> of <paramref name="length"/> bytes goes in <see cref="Image"/>;
        /// null when there is no image (any more). A chunk that does not fit the announced size (chunks of unequal
        /// length, or lengths that do not add up to it) moves what arrived into <see cref="Parts"/>: the sha256 check
        /// then judges the joined bytes, as for chunks without a size.</summary>
        public long? Place(int index, int length)
        {
            if (Image is not { } image)
            {
                return null;
            }

            var last = index == Total - 1;
            var chunk = last ? _chunkLength : _chunkLength < 0 ? length : _chunkLength;
            var lastLength = last ? length : _lastLength;
            var fits = (last || length == chunk) && (chunk < 0 || (long)(Total - 1) * chunk + Math.Max(0, lastLength) <= image.Length)
                && (chunk < 0 || lastLength < 0 || (long)(Total - 1) * chunk + lastLength == image.Length)
                && (!last || length <= image.Length) && (Total > 1 || length == image.Length);
            if (fits)
            {
                return last ? image.Length - length : (long)index * chunk;
            }

            // Demote: copy what arrived into parts of their own (hashed whole at the end).
            _hash?.Dispose();
            _hash = null;
            for (var i = 0; i < Total && _have is not null; i++)
            {
                if (_have[i])
                {
                    var (at, kept) = Placed(i, image);
                    Parts[i] = image.AsSpan((int)at, kept).ToArray();
                }
            }

            Image = null;
            return null;
        }

        /// <summary>Notes that chunk <paramref name="index"/> of a served delivery went by; true once all of them did.</summary>
        public bool Pass(int index)
        {
            _have ??= new bool[Total];
            if (index < Total && !_have[index])
            {
                _have[index] = true;
                _received++;
            }

            return _received == Total;
        }

        /// <summary>Records chunk <paramref name="index"/> as decoded into <see cref="Image"/> at the place <see cref="Place"/> gave.</summary>
        public void Commit(int index, int length)
        {
            _have ??= new bool[Total];
            _have[index] = true;
            _received++;
            Size += length;
            if (index == Total - 1)
            {
                _lastLength = length;
            }
            else
            {
                _chunkLength = length;
            }

            HashPrefix();
        }

        /// <summary>The image's sha256 when every chunk was hashed in place as it arrived (see <see cref="HashPrefix"/>);
        /// else null, and the caller hashes the assembled bytes.</summary>
        public byte[]? TakeHash()
        {
            if (_hash is not { } hash)
            {
                return null;
            }

            _hash = null;
            using (hash)
            {
                return _hashed == Total ? hash.GetHashAndReset() : null;
            }
        }

        /// <summary>Feeds the hash with the chunks that now extend the contiguous run from chunk 0 (in index order, so
        /// chunks that arrive out of order wait for their predecessors).</summary>
        private void HashPrefix()
        {
            if (Sha256 is null || Image is not { } image || _have is null)
            {
                return;
            }

            while (_hashed < Total && _have[_hashed])
            {
                var (at, length) = Placed(_hashed, image);
                _hash ??= IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                _hash.AppendData(image, (int)at, length);
                _hashed++;
            }
        }

        /// <summary>Where chunk <paramref name="index"/>, committed, lies in <paramref name="image"/>: chunk i &lt; total-1 at
        /// i × the chunk length, the last one at the end.</summary>
        private (long At, int Length) Placed(int index, byte[] image) =>
            index == Total - 1 ? (image.Length - _lastLength, _lastLength) : ((long)index * _chunkLength, _chunkLength);
    }
}
