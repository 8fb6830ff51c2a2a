using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Contracts.Configuration;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Configuration;

/// <summary>
/// Reads <see cref="PropletSettings"/> from PROPLET_* variables with the original's names and defaults, falling back to
/// the <c>[PROPLET_CONFIG_SECTION]</c> table of PROPLET_CONFIG_FILE (default config.toml, section proplet) for the four
/// identity keys (spec §4.3). The identity names the original's docs use (PROPLET_DOMAIN_ID, PROPLET_CLIENT_ID,
/// PROPLET_CLIENT_KEY; domain_id, client_id, client_key in the file) are accepted too; its code's names win when both are
/// set. Unlike the original, a malformed value is an error naming the variable instead of a
/// silently kept default; "10s" is still accepted for seconds because the original's docker/.env uses it.
/// </summary>
public static class PropletSettingsLoader
{
    private static readonly (string Variable, string Key, string? AliasVariable, string? AliasKey)[] Identity =
    [
        ("PROPLET_TENANT_ID", "tenant_id", "PROPLET_DOMAIN_ID", "domain_id"),
        ("PROPLET_ENTITY_ID", "entity_id", "PROPLET_CLIENT_ID", "client_id"),
        ("PROPLET_API_KEY", "api_key", "PROPLET_CLIENT_KEY", "client_key"),
        ("PROPLET_CHANNEL_ID", "channel_id", null, null),
    ];

    public static PropletSettings Load(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        // Trimmed as the manager and the proxy trim theirs: a CRLF .env left "default\r" in PROPLET_TENANT_ID, and the
        // proplet subscribed to m/default\r/c/… and was never discovered, without a word. Blank is unset, as empty is.
        string? Get(string name) => environment(name)?.Trim() is { Length: > 0 } value ? value : null;

        var identity = Identity.ToDictionary(i => i.Key, i => Get(i.Variable) ?? (i.AliasVariable is { } alias ? Get(alias) : null), StringComparer.Ordinal);
        if (identity.Values.Any(v => v is null))
        {
            var path = Get("PROPLET_CONFIG_FILE") ?? "config.toml";
            var sectionName = Get("PROPLET_CONFIG_SECTION") ?? "proplet";
            TomlDocument document;
            try
            {
                document = TomlDocument.Load(path, sectionName);
            }
            catch (TomlException ex)
            {
                throw new ConfigurationException(ex.Message, ex);
            }

            var section = document.Section(sectionName)
                ?? throw new ConfigurationException($"config file '{path}' has no [{sectionName}] section");
            foreach (var (variable, key, _, aliasKey) in Identity)
            {
                if (identity[key] is not null)
                {
                    continue;
                }

                var found = section.TryGetValue(key, out var value) || (aliasKey is not null && section.TryGetValue(aliasKey, out value));
                if (!found || value is not string text)
                {
                    throw new ConfigurationException($"config file '{path}' [{sectionName}]: {key} must be a string (it stands in for {variable})");
                }

                identity[key] = text.Length > 0 ? text : null;
            }
        }

        var missing = Identity.Where(i => identity[i.Key] is null).Select(i => $"{i.Key}/{i.Variable}").ToList();
        var protocol = Get("PROPLET_MQTT_PROTOCOL_VERSION");
        if (!BrokerOptions.TryParseProtocolVersion(protocol, out var protocolVersion))
        {
            throw new ConfigurationException($"PROPLET_MQTT_PROTOCOL_VERSION must be 5 or 3.1.1 (got '{protocol}')");
        }
        if (missing.Count > 0)
        {
            throw new ConfigurationException($"missing required proplet configuration: {string.Join(", ", missing)}");
        }

        // They are MQTT topic levels (m/{tenant}/c/{channel}/…): a wildcard subscribed to other tenants' or channels'
        // start messages (PROPLET_TENANT_ID=+), a '/' shifted every level. The manager refuses its own the same way.
        foreach (var (variable, key) in new[] { ("PROPLET_TENANT_ID", "tenant_id"), ("PROPLET_CHANNEL_ID", "channel_id") })
        {
            if (identity[key]!.IndexOfAny(['/', '+', '#']) >= 0)
            {
                throw new ConfigurationException($"{variable} must not contain '/', '+' or '#' (it is part of the MQTT topics; got '{identity[key]}')");
            }
        }

        var timeout = Seconds(Get, "PROPLET_TASK_TIMEOUT", 0, allowZero: true);
        var warnings = new List<string>();
        var metricsPort = (int)Integer(Get, "PROPLET_METRICS_PORT", 9092, 0, 65_535);
        if (metricsPort == 0)
        {
            // A value the original accepted, keeping its default with a warning (spec §4.2): a deployment may carry it,
            // so it does not stop the proplet as a malformed value does (docs/edge.md).
            metricsPort = 9092;
            warnings.Add("PROPLET_METRICS_PORT '0' is not a port; the default 9092 is kept");
        }

        var settings = new PropletSettings
        {
            TenantId = identity["tenant_id"]!,
            EntityId = identity["entity_id"]!,
            ApiKey = identity["api_key"]!,
            ChannelId = identity["channel_id"]!,
            LogLevel = LogLevelOf(Get("PROPLET_LOG_LEVEL")),
            JsonLogs = Get("PROPLET_LOG_FORMAT")?.Trim().ToLowerInvariant() switch
            {
                null or "text" => false,
                "json" => true,
                var other => throw new ConfigurationException($"PROPLET_LOG_FORMAT '{other}' is not text or json"),
            },
            MqttAddress = Get("PROPLET_MQTT_ADDRESS") ?? "tcp://localhost:1883",
            Qos = Integer(Get, "PROPLET_MQTT_QOS", 2, 0, 2) switch
            {
                0 => MqttQualityOfServiceLevel.AtMostOnce,
                1 => MqttQualityOfServiceLevel.AtLeastOnce,
                _ => MqttQualityOfServiceLevel.ExactlyOnce,
            },
            KeepAlive = KeepAliveSeconds(Get, "PROPLET_MQTT_KEEP_ALIVE"),
            MqttProtocolVersion = protocolVersion,
            MqttTimeout = Seconds(Get, "PROPLET_MQTT_TIMEOUT", 30, allowZero: false),
            MaxPacketSize = (int)Integer(Get, "PROPLET_MQTT_MAX_PACKET_SIZE", 10 * 1024 * 1024, 1024, 268_435_455),
            Inflight = (int)Integer(Get, "PROPLET_MQTT_INFLIGHT", 10, 1, 65_535),
            RequestChannelCapacity = (int)Integer(Get, "PROPLET_MQTT_REQUEST_CHANNEL_CAPACITY", 128, 1, 1_000_000),
            TlsCaCert = ExistingFile(Get, "PROPLET_MQTT_TLS_CA_CERT"),
            TlsClientCert = ExistingFile(Get, "PROPLET_MQTT_TLS_CLIENT_CERT"),
            TlsClientKey = ExistingFile(Get, "PROPLET_MQTT_TLS_CLIENT_KEY"),
            TlsInsecureSkipVerify = Truthy(Get("PROPLET_MQTT_TLS_INSECURE_SKIP_VERIFY"), false),
            CleanSession = Boolean(Get, "PROPLET_MQTT_CLEAN_SESSION", true),
            // At least a second: each tick is a QoS 2 publish the manager handles (and, for metrics, stores); 0.001 s
            // was a thousand a second from every proplet.
            LivelinessInterval = Seconds(Get, "PROPLET_LIVELINESS_INTERVAL", 10, allowZero: false, minimum: 1),
            MetricsInterval = Seconds(Get, "PROPLET_METRICS_INTERVAL", 10, allowZero: true, minimum: 1),
            EnableMonitoring = Truthy(Get("PROPLET_ENABLE_MONITORING"), true),
            Namespace = Get("PROPLET_MANAGER_K8S_NAMESPACE") ?? "default",
            ExternalWasmRuntime = Get("PROPLET_EXTERNAL_WASM_RUNTIME"),
            PluginDir = Get("PROPLET_PLUGIN_DIR"),
            Dirs = Get("PROPLET_DIRS") is { } dirs ? dirs.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [],
            Description = Get("PROPLET_DESCRIPTION"),
            Tags = Get("PROPLET_TAGS") is { } tags ? tags.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [],
            Location = Get("PROPLET_LOCATION"),
            CollectSystemInfo = NotFalsy(Get("PROPLET_COLLECT_SYSTEM_INFO")),
            MaxConcurrentTasks = (int)Integer(Get, "PROPLET_MAX_CONCURRENT_TASKS", Math.Max(2, Environment.ProcessorCount * 2), 1, 100_000),
            MaxWaitingBytes = Integer(Get, "PROPLET_MAX_WAITING_BYTES", 256L << 20, 1 << 20, long.MaxValue),
            TaskFuel = Get("PROPLET_TASK_FUEL") is null ? null : Integer(Get, "PROPLET_TASK_FUEL", 0, 1, long.MaxValue),
            TaskMaxMemoryMib = Get("PROPLET_TASK_MAX_MEMORY_MIB") is null ? null : Integer(Get, "PROPLET_TASK_MAX_MEMORY_MIB", 0, 1, 1 << 20),
            TaskTimeout = timeout > TimeSpan.Zero ? timeout : null,
            OutputLimit = (int)Integer(Get, "PROPLET_TASK_OUTPUT_LIMIT", 1 << 20, 0, int.MaxValue),
            WasmCacheDir = Get("PROPLET_WASM_CACHE_DIR"),
            ChunkWait = Seconds(Get, "PROPLET_CHUNK_WAIT", 60, allowZero: false),
            ChunkTtl = Seconds(Get, "PROPLET_CHUNK_TTL", 300, allowZero: false),
            ChunkStall = Seconds(Get, "PROPLET_CHUNK_STALL", 2, allowZero: false),
            HttpTlsCaCert = ExistingFile(Get, "PROPLET_HTTP_TLS_CA_CERT"),
            HttpTlsInsecureSkipVerify = Truthy(Get("PROPLET_HTTP_TLS_INSECURE_SKIP_VERIFY"), false),
            MetricsEnabled = Truthy(Get("PROPLET_METRICS_ENABLED"), true),
            HttpEnabled = Truthy(Get("PROPLET_HTTP_ENABLED"), false),
            HttpProxyPort = (int)Integer(Get, "PROPLET_HTTP_PROXY_PORT", 8222, 1, 65_535),
            MetricsPort = metricsPort,
            MaxBinarySize = Integer(Get, "PROPLET_MAX_BINARY_SIZE", 100L << 20, 1, Array.MaxLength), // one array holds a binary
            ImageCacheBytes = Integer(Get, "PROPLET_IMAGE_CACHE_BYTES", 32L << 20, 0, long.MaxValue),
            Warnings = warnings,
        };
        settings = settings with
        {
            WasmPoolInstances = (int)Integer(Get, "PROPLET_WASM_POOL_INSTANCES", Math.Max(WasmHost.WasmPool.DefaultInstances, 2L * settings.MaxConcurrentTasks), 0, 1_000_000),
        };

        if ((settings.TlsClientCert is null) != (settings.TlsClientKey is null))
        {
            throw new ConfigurationException("PROPLET_MQTT_TLS_CLIENT_CERT and PROPLET_MQTT_TLS_CLIENT_KEY must be given together");
        }

        // Read now, so a file that exists but is not what it should be is a configuration error naming the variable: read
        // once the proplet had started, it stopped the proplet with exit code 0.
        if (settings.TlsCaCert is { } ca && BrokerTls.CaFileProblem(ca) is { } caProblem)
        {
            throw new ConfigurationException($"PROPLET_MQTT_TLS_CA_CERT: '{ca}' cannot be read as PEM CA certificates: {caProblem}");
        }

        if (settings is { TlsClientCert: { } certFile, TlsClientKey: { } keyFile } && BrokerTls.ClientCertificateProblem(certFile, keyFile) is { } clientProblem)
        {
            throw new ConfigurationException(
                $"PROPLET_MQTT_TLS_CLIENT_CERT '{certFile}' and PROPLET_MQTT_TLS_CLIENT_KEY '{keyFile}' cannot be read as a PEM certificate and its private key: {clientProblem}");
        }

        if (settings.HttpTlsCaCert is { } httpCa && HttpCaProblem(httpCa) is { } httpCaProblem)
        {
            throw new ConfigurationException($"PROPLET_HTTP_TLS_CA_CERT: '{httpCa}' cannot be read as a certificate (PEM or DER): {httpCaProblem}");
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
            throw new ConfigurationException($"PROPLET_MQTT_ADDRESS '{BrokerOptions.Redacted(settings.MqttAddress)}' is not an MQTT address such as tcp://host:1883 ({ex.Message})", ex);
        }

        return settings;
    }

    /// <summary>
    /// The original's rule for its boolean variables (spec §4.2): 1/true/yes/on (any case) is true, any other value is
    /// false, also for a variable that defaults to true (PROPLET_ENABLE_MONITORING=maybe turns the metrics off there);
    /// <paramref name="defaultValue"/> applies only when unset. Not an error, unlike the other malformed settings: the
    /// original reads such a value as false and a deployment may rely on it (docs/edge.md).
    /// </summary>
    public static bool Truthy(string? value, bool defaultValue) => value is null ? defaultValue : Flags.IsTrue(value);

    /// <summary>PROPLET_COLLECT_SYSTEM_INFO's rule in the original (spec §4.2): only 0/false/no/off turn it off.</summary>
    public static bool NotFalsy(string? value) => value is null || !Flags.IsFalse(value);

    /// <summary>A boolean the original does not have: true or false (1/yes/on, 0/no/off), anything else is an error.</summary>
    private static bool Boolean(Func<string, string?> get, string name, bool defaultValue) => get(name) switch
    {
        null => defaultValue,
        var v when Flags.IsTrue(v) => true,
        var v when Flags.IsFalse(v) => false,
        var v => throw new ConfigurationException($"{name} '{v}' must be true or false"),
    };

    private static LogLevel LogLevelOf(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null => LogLevel.Information,
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" or "information" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => throw new ConfigurationException($"PROPLET_LOG_LEVEL '{value}' is not one of trace, debug, info, warn, error"),
    };

    private static long Integer(Func<string, string?> get, string name, long defaultValue, long min, long max)
    {
        if (get(name) is not { } text)
        {
            return defaultValue;
        }

        return long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw new ConfigurationException($"{name} '{text}' must be an integer from {min} to {max}");
    }

    /// <summary>
    /// PROPLET_MQTT_KEEP_ALIVE: whole seconds 0..65535 (CONNECT carries a 16-bit count; "30s" is accepted like the other
    /// seconds). The general <see cref="Seconds"/> let 70000 through to the broker client, which refused it in the hosted
    /// service with a stack trace instead of this error, and 0.5 became 0. 0 stays allowed: it is MQTT's "keep-alive
    /// off" (the broker then notices a silent death only when TCP does, and publishes the Last Will only then).
    /// </summary>
    private static TimeSpan KeepAliveSeconds(Func<string, string?> get, string name)
    {
        if (get(name) is not { } text)
        {
            return TimeSpan.FromSeconds(30);
        }

        var trimmed = text.Trim();
        if (trimmed.EndsWith('s'))
        {
            trimmed = trimmed[..^1];
        }

        return ushort.TryParse(trimmed, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            ? TimeSpan.FromSeconds(seconds)
            : throw new ConfigurationException($"{name} '{text}' must be a whole number of seconds from 0 (keep-alive off) to 65535");
    }

    /// <summary>A number of seconds, "10s" too; <paramref name="minimum"/> is 0.001 unless a setting needs more (timers
    /// tick in milliseconds).</summary>
    private static TimeSpan Seconds(Func<string, string?> get, string name, double defaultSeconds, bool allowZero, double minimum = 0.001)
    {
        if (get(name) is not { } text)
        {
            return TimeSpan.FromSeconds(defaultSeconds);
        }

        var trimmed = text.Trim();
        if (trimmed.EndsWith('s'))
        {
            trimmed = trimmed[..^1];
        }

        return double.TryParse(trimmed, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds)
               && seconds <= TaskLimits.MaxWait.TotalSeconds && (seconds >= minimum || (allowZero && seconds == 0))
            ? TimeSpan.FromSeconds(seconds)
            : throw new ConfigurationException(
                $"{name} '{text}' must be a number of seconds ({(allowZero ? "0, or " : "")}at least {minimum.ToString(CultureInfo.InvariantCulture)}{(minimum < 1 ? ": timers tick in milliseconds" : "")}), at most {TaskLimits.MaxWait.TotalSeconds:F0} (about 49 days)");
    }

    /// <summary>Why the download client could not load <paramref name="path"/> as it does (DownloadClient), or null.</summary>
    private static string? HttpCaProblem(string path)
    {
        try
        {
            using var certificate = X509CertificateLoader.LoadCertificateFromFile(path);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            return ex.Message;
        }
    }

    private static string? ExistingFile(Func<string, string?> get, string name) => get(name) switch
    {
        null => null,
        var path when File.Exists(path) => path,
        var path => throw new ConfigurationException($"{name}: file '{path}' does not exist"),
    };
}
