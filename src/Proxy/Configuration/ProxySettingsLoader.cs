using System.Globalization;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Contracts;
using Propeller.Contracts.Configuration;

namespace Propeller.Proxy.Configuration;

/// <summary>
/// Reads <see cref="ProxySettings"/> from PROXY_* variables with the original's names and defaults (spec §3.5). If any of
/// the four identity values is empty, they come from the <c>[proxy]</c> table of PROXY_CONFIG_FILE (default config.toml;
/// the original's path is fixed), where the docs' names (domain_id, client_id, client_key) are accepted beside the
/// code's. Unlike the original, a malformed value is an error naming the variable, PROXY_REGISTRY_URL is needed only
/// with PROXY_AUTHENTICATE, and the settings we added (PROXY_MAX_ARTIFACT_BYTES, PROXY_CACHE_BYTES, …) are checked too.
/// </summary>
public static class ProxySettingsLoader
{
    /// <summary>The most chunks a proplet assembles into one image (src/Edge/Fetching/ChunkAssembler.cs, MaxChunks).</summary>
    internal const int MaxChunks = 100_000;

    private static readonly (string Variable, string Key, string AliasVariable, string AliasKey)[] Identity =
    [
        ("PROXY_TENANT_ID", "tenant_id", "PROXY_DOMAIN_ID", "domain_id"),
        ("PROXY_ENTITY_ID", "entity_id", "PROXY_CLIENT_ID", "client_id"),
        ("PROXY_API_KEY", "api_key", "PROXY_CLIENT_KEY", "client_key"),
        ("PROXY_CHANNEL_ID", "channel_id", "PROXY_CHANNEL_ID", "channel_id"),
    ];

    public static ProxySettings Load(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        string? Get(string name) => environment(name) is { Length: > 0 } value ? value.Trim() : null;

        var identity = Identity.ToDictionary(i => i.Key, i => Get(i.Variable) ?? Get(i.AliasVariable), StringComparer.Ordinal);
        if (identity.Values.Any(v => v is null))
        {
            var path = Get("PROXY_CONFIG_FILE") ?? "config.toml";
            var sectionName = Get("PROXY_CONFIG_SECTION") ?? "proxy";
            TomlDocument document;
            try
            {
                document = TomlDocument.Load(path, sectionName);
            }
            catch (TomlException ex)
            {
                throw new ProxyConfigurationException($"{ex.Message} (set {string.Join(", ", Identity.Where(i => identity[i.Key] is null).Select(i => i.Variable))} or provide the file)", ex);
            }

            var section = document.Section(sectionName)
                ?? throw new ProxyConfigurationException($"config file '{path}' has no [{sectionName}] section");
            foreach (var (variable, key, _, aliasKey) in Identity)
            {
                if (identity[key] is not null)
                {
                    continue;
                }

                if ((section.GetValueOrDefault(key) ?? section.GetValueOrDefault(aliasKey)) is not string text)
                {
                    throw new ProxyConfigurationException($"config file '{path}' [{sectionName}]: {key} must be a string (it stands in for {variable})");
                }

                identity[key] = text.Length > 0 ? text : null;
            }
        }

        var missing = Identity.Where(i => identity[i.Key] is null).Select(i => $"{i.Key}/{i.Variable}").ToList();
        if (missing.Count > 0)
        {
            throw new ProxyConfigurationException($"missing required proxy configuration: {string.Join(", ", missing)}");
        }

        // MQTT topic levels (m/{tenant}/c/{channel}/registry/…): a wildcard would take other tenants' fetch requests.
        foreach (var (variable, key) in new[] { ("PROXY_TENANT_ID", "tenant_id"), ("PROXY_CHANNEL_ID", "channel_id") })
        {
            if (identity[key]!.IndexOfAny(['/', '+', '#']) >= 0)
            {
                throw new ProxyConfigurationException($"{variable} must not contain '/', '+' or '#' (it is part of the MQTT topics; got '{identity[key]}')");
            }
        }

        var authenticate = Boolean(Get, "PROXY_AUTHENTICATE", false);
        var registryHost = Get("PROXY_REGISTRY_URL") is { } url ? HostOf(url) : null;
        var settings = new ProxySettings
        {
            TenantId = identity["tenant_id"]!,
            EntityId = identity["entity_id"]!,
            ApiKey = identity["api_key"]!,
            ChannelId = identity["channel_id"]!,
            LogLevel = Get("PROXY_LOG_LEVEL")?.ToLowerInvariant() switch
            {
                null or "info" or "information" => LogLevel.Information,
                "debug" => LogLevel.Debug,
                "trace" => LogLevel.Trace,
                "warn" or "warning" => LogLevel.Warning,
                "error" => LogLevel.Error,
                var other => throw new ProxyConfigurationException($"PROXY_LOG_LEVEL '{other}' is not one of trace, debug, info, warn, error"),
            },
            MqttAddress = Get("PROXY_MQTT_ADDRESS") ?? "tcp://localhost:1883",
            MqttTimeout = Duration(Get, "PROXY_MQTT_TIMEOUT", TimeSpan.FromSeconds(30)),
            Qos = Integer(Get, "PROXY_MQTT_QOS", 2, 0, 2) switch
            {
                0 => MqttQualityOfServiceLevel.AtMostOnce,
                1 => MqttQualityOfServiceLevel.AtLeastOnce,
                _ => MqttQualityOfServiceLevel.ExactlyOnce,
            },
            TlsCaCert = ExistingFile(Get, "PROXY_MQTT_TLS_CA_CERT"),
            TlsClientCert = ExistingFile(Get, "PROXY_MQTT_TLS_CLIENT_CERT"),
            TlsClientKey = ExistingFile(Get, "PROXY_MQTT_TLS_CLIENT_KEY"),
            TlsInsecureSkipVerify = Boolean(Get, "PROXY_MQTT_TLS_INSECURE_SKIP_VERIFY", false),
            HttpHost = Get("PROXY_HTTP_HOST") ?? "0.0.0.0",
            HttpPort = (int)Integer(Get, "PROXY_HTTP_PORT", 9191, 1, 65_535),
            // The chunk's JSON is ~1.37× this (base64); 64 MiB keeps it below MQTT's 256 MiB packet limit with room.
            ChunkSize = (int)Integer(Get, "PROXY_CHUNK_SIZE", ProxySettings.DefaultChunkSize, 1, 64L << 20),
            BinaryChunks = Boolean(Get, "PROXY_BINARY_CHUNKS", true),
            Authenticate = authenticate,
            RegistryToken = Get("PROXY_REGISTRY_TOKEN"),
            RegistryUsername = Get("PROXY_REGISTRY_USERNAME"),
            RegistryPassword = Get("PROXY_REGISTRY_PASSWORD"),
            RegistryHost = registryHost,
            PlainHttp = PlainHttpPolicy.Parse(Get("PROXY_PLAIN_HTTP")),
            MaxArtifactBytes = Integer(Get, "PROXY_MAX_ARTIFACT_BYTES", 100L << 20, 1, long.MaxValue),
            CacheBytes = Integer(Get, "PROXY_CACHE_BYTES", 256L << 20, 0, long.MaxValue),
            MaxConcurrentFetches = (int)Integer(Get, "PROXY_MAX_CONCURRENT_FETCHES", 50, 1, 10_000),
            // HttpClient.Timeout takes at most int.MaxValue ms (about 596 h): a longer one passed here and threw, unhandled,
            // when the proxy was built. PROXY_MQTT_TIMEOUT reaches timers only, which take GoDuration.MaxTimer.
            RegistryTimeout = Duration(Get, "PROXY_REGISTRY_TIMEOUT", TimeSpan.FromMinutes(2), TimeSpan.FromMilliseconds(int.MaxValue)),
        };

        if (settings.MaxArtifactBytes > Array.MaxLength)
        {
            // An artefact is pulled into one array; a larger one could only fail (out of memory) once downloaded.
            throw new ProxyConfigurationException($"PROXY_MAX_ARTIFACT_BYTES '{settings.MaxArtifactBytes}' is over {Array.MaxLength}, the largest artefact the proxy can hold (one array)");
        }

        // The proplet refuses an image of more chunks (ChunkAssembler.MaxChunks): an artefact the proxy accepts must fit.
        var chunks = (settings.MaxArtifactBytes + settings.ChunkSize - 1) / settings.ChunkSize;
        if (chunks > MaxChunks)
        {
            throw new ProxyConfigurationException(
                $"PROXY_CHUNK_SIZE '{settings.ChunkSize}' splits an artefact of PROXY_MAX_ARTIFACT_BYTES ({settings.MaxArtifactBytes}) into {chunks} chunks, over the {MaxChunks} a proplet accepts; raise the chunk size to at least {(settings.MaxArtifactBytes + MaxChunks - 1) / MaxChunks} or lower the limit");
        }

        if (authenticate && registryHost is null)
        {
            throw new ProxyConfigurationException("PROXY_AUTHENTICATE is true but PROXY_REGISTRY_URL is empty: it names the registry host the credentials are for");
        }

        if (authenticate && settings.RegistryToken is null && (settings.RegistryUsername is null || settings.RegistryPassword is null))
        {
            throw new ProxyConfigurationException("PROXY_AUTHENTICATE is true but neither PROXY_REGISTRY_USERNAME and PROXY_REGISTRY_PASSWORD nor PROXY_REGISTRY_TOKEN are set");
        }

        if ((settings.TlsClientCert is null) != (settings.TlsClientKey is null))
        {
            throw new ProxyConfigurationException("PROXY_MQTT_TLS_CLIENT_CERT and PROXY_MQTT_TLS_CLIENT_KEY must be given together");
        }

        // Read now, so a file that exists but is not what it should be is a configuration error naming the variable: read
        // once the proxy had started, it stopped the proxy with exit code 0.
        if (settings.TlsCaCert is { } ca && BrokerTls.CaFileProblem(ca) is { } caProblem)
        {
            throw new ProxyConfigurationException($"PROXY_MQTT_TLS_CA_CERT: '{ca}' cannot be read as PEM CA certificates: {caProblem}");
        }

        if (settings is { TlsClientCert: { } certFile, TlsClientKey: { } keyFile } && BrokerTls.ClientCertificateProblem(certFile, keyFile) is { } clientProblem)
        {
            throw new ProxyConfigurationException(
                $"PROXY_MQTT_TLS_CLIENT_CERT '{certFile}' and PROXY_MQTT_TLS_CLIENT_KEY '{keyFile}' cannot be read as a PEM certificate and its private key: {clientProblem}");
        }

        try
        {
            if (string.IsNullOrWhiteSpace(new BrokerOptions().WithAddress(settings.MqttAddress).Host))
            {
                throw new UriFormatException("missing host");
            }
        }
        catch (Exception ex) when (ex is UriFormatException or ArgumentException)
        {
            throw new ProxyConfigurationException($"PROXY_MQTT_ADDRESS '{BrokerOptions.Redacted(settings.MqttAddress)}' is not an MQTT address such as tcp://host:1883 ({ex.Message})", ex);
        }

        return settings;
    }

    /// <summary>host[:port] of a PROXY_REGISTRY_URL given as a host, host:port or URL ("https://ghcr.io/"); a URL's
    /// scheme's own port (443 for https, 80 for http) is dropped: "https://ghcr.io:443" is the host ghcr.io.</summary>
    public static string HostOf(string url)
    {
        var text = url.Trim();
        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        var defaultPort = "";
        if (scheme >= 0)
        {
            defaultPort = text[..scheme].ToLowerInvariant() switch { "https" => ":443", "http" => ":80", _ => "" };
            text = text[(scheme + 3)..];
        }

        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var host = (slash >= 0 ? text[..slash] : text).ToLowerInvariant();
        return defaultPort.Length > 0 && host.EndsWith(defaultPort, StringComparison.Ordinal) ? host[..^defaultPort.Length] : host;
    }

    private static bool Boolean(Func<string, string?> get, string name, bool defaultValue) => get(name) switch
    {
        null => defaultValue,
        var v when Flags.IsTrue(v) => true,
        var v when Flags.IsFalse(v) => false,
        var v => throw new ProxyConfigurationException($"{name} '{v}' must be true or false"),
    };

    private static long Integer(Func<string, string?> get, string name, long defaultValue, long min, long max)
    {
        if (get(name) is not { } text)
        {
            return defaultValue;
        }

        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw new ProxyConfigurationException($"{name} '{text}' must be an integer from {min} to {max}");
    }

    private static TimeSpan Duration(Func<string, string?> get, string name, TimeSpan defaultValue, TimeSpan? max = null)
    {
        if (get(name) is not { } text)
        {
            return defaultValue;
        }

        var most = max ?? GoDuration.MaxTimer;
        return GoDuration.TryParse(text, out var value) && value > TimeSpan.Zero && value <= most
            ? value
            : throw new ProxyConfigurationException($"{name} '{text}' must be a positive duration such as 30s or 1m30s, at most {Math.Floor(most.TotalHours):F0}h");
    }

    private static string? ExistingFile(Func<string, string?> get, string name) => get(name) switch
    {
        null => null,
        var path when File.Exists(path) => path,
        var path => throw new ProxyConfigurationException($"{name}: file '{path}' does not exist"),
    };
}
