using System.Globalization;
using System.Text;

namespace Propeller.Proxy.Serving;

/// <summary>The proxy's counters, written in the Prometheus text format for <c>GET /metrics</c>.</summary>
public sealed class ProxyMetrics
{
    private long _requests;
    private long _fetches;
    private long _fetchBytes;
    private long _cacheHits;
    private long _failures;
    private long _chunks;
    private long _chunkFailures;
    private long _deduplicated;
    private long _binaryRequests;

    public long Requests => Interlocked.Read(ref _requests);

    public long Fetches => Interlocked.Read(ref _fetches);

    public long FetchBytes => Interlocked.Read(ref _fetchBytes);

    public long CacheHits => Interlocked.Read(ref _cacheHits);

    public long Failures => Interlocked.Read(ref _failures);

    public long Chunks => Interlocked.Read(ref _chunks);

    public long Deduplicated => Interlocked.Read(ref _deduplicated);

    public long ChunkFailures => Interlocked.Read(ref _chunkFailures);

    /// <summary>Requests answered with binary chunks (<c>registry/chunk</c>).</summary>
    public long BinaryRequests => Interlocked.Read(ref _binaryRequests);

    internal void Request() => Interlocked.Increment(ref _requests);

    internal void Fetched(long bytes)
    {
        Interlocked.Increment(ref _fetches);
        Interlocked.Add(ref _fetchBytes, bytes);
    }

    internal void CacheHit() => Interlocked.Increment(ref _cacheHits);

    internal void Failed() => Interlocked.Increment(ref _failures);

    internal void ChunkPublished() => Interlocked.Increment(ref _chunks);

    internal void ChunkFailed() => Interlocked.Increment(ref _chunkFailures);

    internal void Deduplicate() => Interlocked.Increment(ref _deduplicated);

    internal void BinaryRequest() => Interlocked.Increment(ref _binaryRequests);

    public string Scrape(int inFlight, ArtifactCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var text = new StringBuilder();
        void Line(string name, string type, string help, double value) => text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} {type}\n{name} {value.ToString("R", CultureInfo.InvariantCulture)}\n");
        Line("proxy_requests_total", "counter", "registry/proplet requests received", Requests);
        Line("proxy_requests_binary_total", "counter", "requests answered with binary chunks on registry/chunk", BinaryRequests);
        Line("proxy_requests_deduplicated_total", "counter", "requests for an image whose fetch was in flight", Deduplicated);
        Line("proxy_fetches_total", "counter", "artefacts pulled from a registry", Fetches);
        Line("proxy_fetch_bytes_total", "counter", "bytes pulled from registries", FetchBytes);
        Line("proxy_cache_hits_total", "counter", "artefacts served from the cache", CacheHits);
        Line("proxy_failures_total", "counter", "requests answered on registry/failure", Failures);
        Line("proxy_chunks_published_total", "counter", "chunks published on registry/server or registry/chunk", Chunks);
        Line("proxy_chunk_publish_failures_total", "counter", "chunk publishes that failed", ChunkFailures);
        Line("proxy_fetches_in_flight", "gauge", "images being fetched or published", inFlight);
        Line("proxy_cache_bytes", "gauge", "bytes held by the artefact cache", cache.Bytes);
        Line("proxy_cache_entries", "gauge", "artefacts held by the cache", cache.Count);
        return text.ToString();
    }
}
