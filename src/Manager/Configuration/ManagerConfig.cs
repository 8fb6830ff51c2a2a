using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Npgsql;
using Propeller.Application.Scheduling;
using Propeller.Contracts;
using Propeller.Contracts.Configuration;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Manager.Configuration;

/// <summary>
/// The manager's settings, read once at startup from the original's environment names (spec propeller-manager.md §8)
/// with config.toml as the fallback for the broker credentials, and checked as a whole: every problem is reported in
/// one <see cref="ManagerConfigurationException"/> naming the variable, instead of a default silently taking over.
/// </summary>
internal sealed record ManagerConfig
{
    public required string HttpHost { get; init; }

    public required int HttpPort { get; init; }

    /// <summary>
    /// MANAGER_HTTP_SERVER_CERT / MANAGER_HTTP_SERVER_KEY (PEM files, both or neither): the API is served over HTTPS with
    /// this certificate (spec §8). Read at startup, so an unreadable file is a configuration error, not a failed handshake.
    /// </summary>
    public X509Certificate2? HttpsCertificate { get; init; }

    /// <summary>MANAGER_HTTP_SERVER_READ_HEADER_TIMEOUT: Kestrel's RequestHeadersTimeout; null keeps Kestrel's default.</summary>
    public TimeSpan? HttpReadHeaderTimeout { get; init; }

    /// <summary>MANAGER_HTTP_SERVER_IDLE_TIMEOUT: Kestrel's KeepAliveTimeout; null keeps Kestrel's default.</summary>
    public TimeSpan? HttpIdleTimeout { get; init; }

    /// <summary>MANAGER_HTTP_SERVER_MAX_HEADER_BYTES: Kestrel's MaxRequestHeadersTotalSize; null keeps Kestrel's default.</summary>
    public int? HttpMaxHeaderBytes { get; init; }

    /// <summary>
    /// MANAGER_HTTP_TRUSTED_ORIGINS (comma-separated <c>scheme://host[:port]</c>): pages of these origins may change
    /// things through the API from a browser; every other site's are refused (<see cref="Http.CrossOriginProtection"/>).
    /// </summary>
    public IReadOnlyList<string> HttpTrustedOrigins { get; init; } = [];

    /// <summary>
    /// MANAGER_HTTP_ALLOWED_HOSTS (comma-separated host names, or <c>*</c> for any): the names besides the loopback ones,
    /// IP addresses, MANAGER_HTTP_HOST, the addresses listened on and the machine's name that a browser may reach the
    /// API by; a browser's request by any other name is refused (DNS rebinding; <see cref="Http.CrossOriginProtection"/>).
    /// </summary>
    public IReadOnlyList<string> HttpAllowedHosts { get; init; } = [];

    /// <summary>Null: no broker (the HTTP API and the event store only; nothing is dispatched).</summary>
    public string? MqttAddress { get; init; }

    public MqttQualityOfServiceLevel MqttQos { get; init; } = MqttQualityOfServiceLevel.ExactlyOnce;

    public MqttProtocolVersion MqttProtocolVersion { get; init; } = MqttProtocolVersion.V500;

    public TimeSpan MqttTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// MANAGER_MQTT_SHARE_GROUP (or config.toml [manager] mqtt_share_group): the MQTT shared-subscription group of the
    /// manager nodes of one deployment, so that each result, discovery and metrics message reaches one node. Unset (the
    /// default): <c>propeller-manager</c> when the broker offers shared subscriptions (MQTT 5;
    /// <see cref="MqttShareGroupIfOffered"/>), else plain subscriptions; a name: that group, always; empty or
    /// <c>none</c>: null, plain subscriptions, every node receives everything (docs/operations.md).
    /// </summary>
    public string? MqttShareGroup { get; init; } = Infrastructure.Mqtt.ManagerMqtt.SuggestedShareGroup;

    /// <summary>True when <see cref="MqttShareGroup"/> is the default, used only if the broker offers shared subscriptions.</summary>
    public bool MqttShareGroupIfOffered { get; init; } = true;

    /// <summary>MANAGER_MQTT_TLS_*: set when a CA file is given, a client certificate or the insecure flag (or ssl://).</summary>
    public BrokerTls? MqttTls { get; init; }

    public required string Tenant { get; init; }

    public required string Channel { get; init; }

    public required string EntityId { get; init; }

    public string? ApiKey { get; init; }

    public TimeSpan LivenessWindow { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>MANAGER_PROPLET_RECONNECT_ALLOWANCE: after the manager's broker connection is made (at start, after a
    /// broker outage), how long proplets may take to reconnect before a liveness window starts (our proplet's longest
    /// reconnect backoff, 60 s).</summary>
    public TimeSpan ReconnectAllowance { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>MANAGER_INVOKE_TIMEOUT: how long POST /tasks/{id}/invoke waits for the proplet (the original's 30 s).</summary>
    public TimeSpan InvokeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>MANAGER_METRICS_RETENTION: how long the proplets' telemetry samples are kept (7 days; 0 keeps them for ever).</summary>
    public TimeSpan MetricsRetention { get; init; } = TimeSpan.FromDays(7);

    /// <summary>MANAGER_DEAD_LETTER_RETENTION: how long Wolverine keeps a dead letter (30 days; 0 keeps them for ever).</summary>
    public TimeSpan DeadLetterRetention { get; init; } = TimeSpan.FromDays(30);

    public SchedulingPolicy Policy { get; init; } = SchedulingPolicy.RoundRobin;

    public int MaxRedispatches { get; init; } = 3;

    /// <summary>
    /// MANAGER_REDISPATCH_RESET_AFTER: a task whose lost run had been dispatched this long before (10 minutes) is
    /// re-dispatched as if for the first time: the re-dispatches before it no longer count toward MaxRedispatches.
    /// 0 counts every one.
    /// </summary>
    public TimeSpan RedispatchResetAfter { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// MANAGER_OFFLINE_REDISPATCH_DELAY: how long after a proplet's Last Will (or "offline" status) its running tasks are
    /// re-dispatched (2 s), so that a result it published just before, handled by another node of the share group,
    /// completes its task first. 0 re-dispatches at once.
    /// </summary>
    public TimeSpan OfflineRedispatchDelay { get; init; } = TimeSpan.FromSeconds(2);

    public string? PluginDir { get; init; }

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    public required string PostgresConnectionString { get; init; }

    /// <summary>
    /// MANAGER_EVENTS_MAX_STREAMS: the most GET /events streams this node serves at once (each may hold up to 64 MiB for
    /// a reader that stopped reading); past it a new stream is answered 503.
    /// </summary>
    public int EventsMaxStreams { get; init; } = 256;

    /// <summary>How many events an async projection may be behind before /health/ready fails (MANAGER_PROJECTION_MAX_LAG).</summary>
    public long ProjectionMaxLag { get; init; } = 10_000;

    /// <summary>
    /// How long a projection another node runs may stand still, more than <see cref="ProjectionMaxLag"/> behind, before
    /// /health/ready fails here too (MANAGER_PROJECTION_STALL_TIMEOUT).
    /// </summary>
    public TimeSpan ProjectionStallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Wolverine's durability mode (MANAGER_DURABILITY_MODE or config.toml [manager] durability_mode; ADR 0014):
    /// Balanced (several manager nodes on one database: leader election, agents and projections distributed, a dead
    /// node's messages recovered) or Solo (one node per database).
    /// </summary>
    public DurabilityModeSetting Durability { get; init; } = DurabilityModeSetting.Balanced;

    /// <summary>
    /// MANAGER_NODE_STALE_TIMEOUT (Balanced): how long a node may miss its heartbeats before the others declare it dead
    /// and recover its messages and agents (Wolverine's StaleNodeTimeout; the heartbeat runs at a fifth of it).
    /// </summary>
    public TimeSpan NodeStaleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// MANAGER_COMMAND_BATCHES: how many batches of API task commands may be in flight at once (ADR 0016): the commands
    /// that arrive while a batch commits are decided and committed together, in one Wolverine command and one
    /// transaction. 0 sends each command alone (one transaction each).
    /// </summary>
    public int CommandBatches { get; init; } = 2;

    /// <summary>MANAGER_POSTGRES_SCHEMA, folded to lower case as PostgreSQL folds an unquoted name; null for the default.</summary>
    public string? PostgresSchema { get; init; }

    private const int MaxSchemaLength = 55;

    /// <summary>
    /// EventStore:ConnectionString as given, or one built from MANAGER_POSTGRES_*; a value Npgsql refuses (a connection
    /// string it cannot read, a <c>\u0000</c> in a part) is an error naming the setting, not an exception at start-up.
    /// </summary>
    private static string PostgresConnectionStringOf(Func<string, string?> get, int port, SslMode sslMode, List<string> errors)
    {
        if (get("EventStore:ConnectionString") is { } given)
        {
            try
            {
                _ = new NpgsqlConnectionStringBuilder(given);
            }
            catch (Exception ex) when (ex is ArgumentException or KeyNotFoundException or FormatException or InvalidCastException or OverflowException)
            {
                // Npgsql's refusals: a keyword it does not know (KeyNotFoundException), a value of the wrong kind.
                errors.Add($"EventStore:ConnectionString is not a PostgreSQL connection string: {ex.Message}");
            }

            return given;
        }

        string Part(string name, string fallback)
        {
            var value = get(name) ?? fallback;
            if (value.Contains('\0', StringComparison.Ordinal))
            {
                errors.Add($"{name} must not contain \\u0000");
                return fallback;
            }

            return value;
        }

        return new NpgsqlConnectionStringBuilder
        {
            Host = Part("MANAGER_POSTGRES_HOST", "localhost"),
            Port = port,
            Username = Part("MANAGER_POSTGRES_USER", "propeller"),
            Password = Part("MANAGER_POSTGRES_PASS", "propeller"),
            Database = Part("MANAGER_POSTGRES_DB", "propeller"),
            SslMode = sslMode,
        }.ConnectionString;
    }

    /// <summary>Reads and checks the settings; <paramref name="workingDirectory"/> is where config.toml is looked for.</summary>
    /// <exception cref="ManagerConfigurationException">One or more settings are invalid.</exception>
    public static ManagerConfig Load(IConfiguration configuration, string workingDirectory)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var errors = new List<string>();
        // A value of spaces alone is unset (its default applies): read as empty, it gave topics "m//c/…", an empty client
        // id, "http://:7070" (Kestrel's error named no setting).
        string? Get(string name) => configuration[name] is { } value && value.Trim() is { Length: > 0 } trimmed ? trimmed : null;

        int Int(string name, int fallback, int min, int max)
        {
            var raw = Get(name);
            if (raw is null)
            {
                return fallback;
            }

            if (int.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            {
                return value;
            }

            errors.Add($"{name} must be a whole number from {min} to {max} (got '{raw}')");
            return fallback;
        }

        // minimum: for a duration that works only from some length up (MANAGER_NODE_STALE_TIMEOUT's marks and heartbeats
        // come every fifth of it, 100 ms apart at least: at 100 ms every live node's session was stale at once).
        TimeSpan Duration(string name, TimeSpan fallback, TimeSpan minimum = default)
        {
            var raw = Get(name);
            if (raw is null)
            {
                return fallback;
            }

            // At most what a .NET timer takes: a longer MANAGER_INVOKE_TIMEOUT or MANAGER_MQTT_TIMEOUT made Task.WaitAsync /
            // CancelAfter throw on every invoke or publish, and a huge liveness window overflowed DateTimeOffset.
            if (GoDuration.TryParse(raw, out var value) && value > TimeSpan.Zero && value <= GoDuration.MaxTimer)
            {
                if (value >= minimum)
                {
                    return value;
                }

                errors.Add($"{name} must be at least {minimum.TotalSeconds:0.#}s (got '{raw}')");
                return fallback;
            }

            errors.Add($"{name} must be a positive duration such as 30s, 1m or 500ms, at most {GoDuration.MaxTimer.TotalHours:F0}h (about 49 days; got '{raw}')");
            return fallback;
        }

        // Go's strconv.ParseBool, which the original's env parser uses: anything else stops its start, and ours.
        bool Bool(string name)
        {
            switch (Get(name))
            {
                case null:
                    return false;
                case "1" or "t" or "T" or "TRUE" or "true" or "True":
                    return true;
                case "0" or "f" or "F" or "FALSE" or "false" or "False":
                    return false;
                case var raw:
                    errors.Add($"{name} must be true or false (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False; got '{raw}')");
                    return false;
            }
        }

        // Broker credentials: environment first; what is missing comes from config.toml ([manager] table). The names the
        // original's docs use (DOMAIN_ID, CLIENT_ID, CLIENT_KEY) are accepted too; its code's names win when both are set.
        var tenant = Get("MANAGER_TENANT_ID") ?? Get("MANAGER_DOMAIN_ID");
        var channel = Get("MANAGER_CHANNEL_ID");
        var entity = Get("MANAGER_ENTITY_ID") ?? Get("MANAGER_CLIENT_ID");
        var apiKey = Get("MANAGER_API_KEY") ?? Get("MANAGER_CLIENT_KEY");
        var configFile = Get("MANAGER_CONFIG_FILE");
        string? durabilityToml = null;
        var durabilityRaw = Get("MANAGER_DURABILITY_MODE");
        // Set but empty means "no group" (plain subscriptions), unset the default group if the broker offers it, so it is
        // read without Get, which treats empty as unset.
        var shareGroup = configuration["MANAGER_MQTT_SHARE_GROUP"]?.Trim();
        var tomlPath = Path.Combine(workingDirectory, configFile ?? "config.toml");
        if (tenant is null || channel is null || entity is null || apiKey is null || durabilityRaw is null || shareGroup is null || configFile is not null)
        {
            if (File.Exists(tomlPath))
            {
                try
                {
                    // Only the [manager] table is parsed: a config.toml shared with the proplet and proxy may hold TOML this
                    // reader does not handle (arrays, inline tables) in their tables.
                    var manager = TomlDocument.Load(tomlPath, "manager").Section("manager");
                    string? Toml(string key) => manager is not null && manager.TryGetValue(key, out var v) && v is string { Length: > 0 } text ? text : null;
                    tenant ??= Toml("tenant_id") ?? Toml("domain_id");
                    channel ??= Toml("channel_id");
                    entity ??= Toml("entity_id") ?? Toml("client_id");
                    apiKey ??= Toml("api_key") ?? Toml("client_key");
                    durabilityToml = Toml("durability_mode");
                    shareGroup ??= manager is not null && manager.TryGetValue("mqtt_share_group", out var g) && g is string group ? group.Trim() : null;
                }
                catch (TomlException ex)
                {
                    errors.Add(ex.Message);
                }
            }
            else if (configFile is not null)
            {
                errors.Add($"MANAGER_CONFIG_FILE names {tomlPath}, which does not exist");
            }
        }

        var mqttAddress = Get("MANAGER_MQTT_ADDRESS");
        if (mqttAddress is not null && !ValidBrokerAddress(mqttAddress))
        {
            errors.Add($"MANAGER_MQTT_ADDRESS must look like tcp://host:1883 or ssl://host:8883 (tls://, mqtts://, tcps:// and mqtt+ssl:// are TLS too; ws:// and wss:// are not supported) (got '{Propeller.Broker.BrokerOptions.Redacted(mqttAddress)}')");
        }

        var policy = Get("MANAGER_SCHEDULER_POLICY") switch
        {
            null or "round-robin" or "round_robin" or "roundrobin" => SchedulingPolicy.RoundRobin,
            "least-loaded" or "least_loaded" => SchedulingPolicy.LeastLoaded,
            "priority" => SchedulingPolicy.Priority,
            var other => Fail(SchedulingPolicy.RoundRobin, $"MANAGER_SCHEDULER_POLICY must be round-robin, least-loaded or priority (got '{other}')"),
        };
        var logLevel = Get("MANAGER_LOG_LEVEL")?.ToLowerInvariant() switch
        {
            null or "info" => LogLevel.Information,
            "debug" => LogLevel.Debug,
            "warn" or "warning" => LogLevel.Warning,
            "error" => LogLevel.Error,
            var other => Fail(LogLevel.Information, $"MANAGER_LOG_LEVEL must be debug, info, warn or error (got '{other}')"),
        };
        if (Get("MANAGER_STORAGE_TYPE") is { } storage && !string.Equals(storage, "postgres", StringComparison.OrdinalIgnoreCase))
        {
            errors.Add($"MANAGER_STORAGE_TYPE '{storage}' is not supported: this manager stores everything in PostgreSQL (set postgres or leave it unset)");
        }

        var pluginDir = Get("MANAGER_PLUGIN_DIR");
        if (pluginDir is not null && File.Exists(pluginDir))
        {
            errors.Add($"MANAGER_PLUGIN_DIR {pluginDir} is a file, not a directory");
        }

        var sslMode = SslMode.Disable;
        if ((Get("MANAGER_POSTGRES_SSL_MODE") ?? Get("MANAGER_POSTGRES_SSLMODE")) is { } ssl
            && !Enum.TryParse(ssl.Replace("-", "", StringComparison.Ordinal), ignoreCase: true, out sslMode))
        {
            errors.Add($"MANAGER_POSTGRES_SSL_MODE must be disable, allow, prefer, require, verify-ca or verify-full (got '{ssl}')");
        }

        var connectionString = PostgresConnectionStringOf(Get, Int("MANAGER_POSTGRES_PORT", 5432, 1, 65535), sslMode, errors);

        string? TlsFile(string name)
        {
            var path = Get(name);
            if (path is not null && !File.Exists(path))
            {
                errors.Add($"{name} names {path}, which does not exist");
            }

            return path;
        }

        var tlsCa = TlsFile("MANAGER_MQTT_TLS_CA_CERT");
        var tlsCert = TlsFile("MANAGER_MQTT_TLS_CLIENT_CERT");
        var tlsKey = TlsFile("MANAGER_MQTT_TLS_CLIENT_KEY");
        var tlsInsecure = Bool("MANAGER_MQTT_TLS_INSECURE_SKIP_VERIFY");
        if ((tlsCert is null) != (tlsKey is null))
        {
            errors.Add("MANAGER_MQTT_TLS_CLIENT_CERT and MANAGER_MQTT_TLS_CLIENT_KEY must be given together");
        }

        // Read now, as the connection will read them: a file that is no PEM, or a key that is not the certificate's, failed
        // only at the first connect, retried for ever in the log while the manager looked up (as the proplet's and the
        // proxy's, session 42).
        if (tlsCa is not null && File.Exists(tlsCa) && BrokerTls.CaFileProblem(tlsCa) is { } caProblem)
        {
            errors.Add($"MANAGER_MQTT_TLS_CA_CERT {tlsCa} cannot be read as PEM certificates: {caProblem}");
        }

        if (tlsCert is not null && tlsKey is not null && File.Exists(tlsCert) && File.Exists(tlsKey)
            && BrokerTls.ClientCertificateProblem(tlsCert, tlsKey) is { } certificateProblem)
        {
            errors.Add($"MANAGER_MQTT_TLS_CLIENT_CERT and MANAGER_MQTT_TLS_CLIENT_KEY ({tlsCert}, {tlsKey}) are not a PEM certificate and its key: {certificateProblem}");
        }

        var httpsCertificate = LoadHttpsCertificate(Get("MANAGER_HTTP_SERVER_CERT"), Get("MANAGER_HTTP_SERVER_KEY"), errors);

        // A retention is no timer: longer than 49 days is fine, and 0 means no pruning.
        TimeSpan Retention(string name, TimeSpan fallback) => ZeroOrDuration(name, fallback, "168h or 720h", "to keep everything");

        TimeSpan ZeroOrDuration(string name, TimeSpan fallback, string examples, string zero)
        {
            var raw = Get(name);
            if (raw is null)
            {
                return fallback;
            }

            if (GoDuration.TryParse(raw, out var value) && value >= TimeSpan.Zero && value <= TimeSpan.FromDays(36_500))
            {
                return value;
            }

            errors.Add($"{name} must be a duration such as {examples}, or 0 {zero} (got '{raw}')");
            return fallback;
        }

        // Marten and Wolverine name the schema unquoted, so PostgreSQL folds it to lower case; every other statement
        // quotes it, so it is folded here once for all of them (a mixed-case name otherwise left the projections'
        // readiness check and the telemetry reading a schema that does not exist). Its plugin-jobs schema adds
        // "_plugins" within PostgreSQL's 63-byte names.
        string? Schema(string? raw)
        {
            if (raw is null)
            {
                return null;
            }

            var name = raw.ToLowerInvariant();
            return name.Length is > 0 and <= MaxSchemaLength && (char.IsAsciiLetterLower(name[0]) || name[0] == '_')
                && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_')
                ? name
                : Fail<string?>(null, $"MANAGER_POSTGRES_SCHEMA must be a letter or '_' followed by letters, digits or '_', at most {MaxSchemaLength} characters (got '{raw}')");
        }

        // The original's net/http server settings (spec §8) where Kestrel has the same limit; unset keeps Kestrel's
        // default. READ_TIMEOUT and WRITE_TIMEOUT (whole request / whole response) have no Kestrel equivalent
        // (docs/compatibility.md).
        TimeSpan? OptionalDuration(string name) => Get(name) is null ? null : Duration(name, TimeSpan.Zero);
        var readHeaderTimeout = OptionalDuration("MANAGER_HTTP_SERVER_READ_HEADER_TIMEOUT");
        var idleTimeout = OptionalDuration("MANAGER_HTTP_SERVER_IDLE_TIMEOUT");
        int? maxHeaderBytes = Get("MANAGER_HTTP_SERVER_MAX_HEADER_BYTES") is null ? null : Int("MANAGER_HTTP_SERVER_MAX_HEADER_BYTES", 0, 1024, int.MaxValue);
        var trustedOrigins = new List<string>();
        foreach (var origin in (Get("MANAGER_HTTP_TRUSTED_ORIGINS") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (Http.CrossOriginProtection.Normalize(origin) is { } normalized)
            {
                trustedOrigins.Add(normalized);
            }
            else
            {
                errors.Add($"MANAGER_HTTP_TRUSTED_ORIGINS must list origins such as https://ops.example.com or http://host:8080, with no path (got '{origin}')");
            }
        }

        var allowedHosts = new List<string>();
        foreach (var host in (Get("MANAGER_HTTP_ALLOWED_HOSTS") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (host == "*" || Uri.CheckHostName(host.Trim('[', ']')) != UriHostNameType.Unknown)
            {
                allowedHosts.Add(host);
            }
            else
            {
                errors.Add($"MANAGER_HTTP_ALLOWED_HOSTS must list host names such as manager.example.com (no scheme or port), or * (got '{host}')");
            }
        }

        // Marten is the only event store since issue 14 (ADR 0010); the old switch is still read so that a setting that
        // asks for the deleted store fails clearly instead of starting on an empty Marten schema.
        switch ((Get("EventStore:Provider") ?? Get("MANAGER_EVENT_STORE"))?.ToLowerInvariant())
        {
            case null or "" or "marten":
                break;
            case "own":
                errors.Add("MANAGER_EVENT_STORE=own is no longer available: the events are in Marten's streams (ADR 0010); unset MANAGER_EVENT_STORE");
                break;
            case var other:
                errors.Add($"MANAGER_EVENT_STORE must be marten or unset (got '{other}')");
                break;
        }

        // Wolverine runs every command since issue 15 (ADR 0014); the old switch is still read so that a setting that asks
        // for the deleted write side fails clearly.
        switch (Get("MANAGER_PIPELINE")?.ToLowerInvariant())
        {
            case null or "" or "wolverine":
                break;
            case "own":
                errors.Add("MANAGER_PIPELINE=own is no longer available: Wolverine's handlers run every command (ADR 0014); unset MANAGER_PIPELINE");
                break;
            case var other:
                errors.Add($"MANAGER_PIPELINE must be wolverine or unset (got '{other}')");
                break;
        }

        durabilityRaw ??= durabilityToml;
        var durability = durabilityRaw?.ToLowerInvariant() switch
        {
            null => DurabilityModeSetting.Balanced,
            "balanced" => DurabilityModeSetting.Balanced,
            "solo" => DurabilityModeSetting.Solo,
            var other => Fail(DurabilityModeSetting.Balanced, $"MANAGER_DURABILITY_MODE (or durability_mode in config.toml [manager]) must be solo or balanced (got '{other}')"),
        };
        var config = new ManagerConfig
        {
            Durability = durability,
            NodeStaleTimeout = Duration("MANAGER_NODE_STALE_TIMEOUT", TimeSpan.FromSeconds(10), minimum: TimeSpan.FromSeconds(1)),
            ProjectionMaxLag = Int("MANAGER_PROJECTION_MAX_LAG", 10_000, 0, int.MaxValue),
            EventsMaxStreams = Int("MANAGER_EVENTS_MAX_STREAMS", 256, 1, 100_000),
            ProjectionStallTimeout = Duration("MANAGER_PROJECTION_STALL_TIMEOUT", TimeSpan.FromSeconds(60)),
            CommandBatches = Int("MANAGER_COMMAND_BATCHES", 2, 0, 64),
            MqttTls = tlsCa is not null || tlsCert is not null || tlsInsecure
                ? new BrokerTls { CaFile = tlsCa, ClientCertificateFile = tlsCert, ClientKeyFile = tlsKey, AllowUntrustedCertificates = tlsInsecure }
                : null,
            HttpHost = Get("MANAGER_HTTP_HOST") ?? "localhost",
            HttpPort = Int("MANAGER_HTTP_PORT", 7070, 0, 65535),
            HttpsCertificate = httpsCertificate,
            HttpReadHeaderTimeout = readHeaderTimeout,
            HttpIdleTimeout = idleTimeout,
            HttpMaxHeaderBytes = maxHeaderBytes,
            HttpTrustedOrigins = trustedOrigins,
            HttpAllowedHosts = allowedHosts,
            MqttAddress = mqttAddress,
            MqttQos = (MqttQualityOfServiceLevel)Int("MANAGER_MQTT_QOS", 2, 0, 2),
            MqttProtocolVersion = BrokerOptions.TryParseProtocolVersion(Get("MANAGER_MQTT_PROTOCOL_VERSION"), out var version)
                ? version
                : Fail(MqttProtocolVersion.V500, $"MANAGER_MQTT_PROTOCOL_VERSION must be 5 or 3.1.1 (got '{Get("MANAGER_MQTT_PROTOCOL_VERSION")}')"),
            MqttTimeout = Duration("MANAGER_MQTT_TIMEOUT", TimeSpan.FromSeconds(30)),
            MqttShareGroup = shareGroup switch
            {
                null => Infrastructure.Mqtt.ManagerMqtt.SuggestedShareGroup,
                "" or "none" => null,
                _ => shareGroup,
            },
            MqttShareGroupIfOffered = shareGroup is null,
            Tenant = tenant ?? "default",
            Channel = channel ?? "default",
            EntityId = entity ?? $"manager-{Environment.MachineName}",
            ApiKey = apiKey,
            LivenessWindow = Duration("MANAGER_PROPLET_LIVENESS_WINDOW", TimeSpan.FromSeconds(30)),
            ReconnectAllowance = Duration("MANAGER_PROPLET_RECONNECT_ALLOWANCE", TimeSpan.FromSeconds(60)),
            InvokeTimeout = Duration("MANAGER_INVOKE_TIMEOUT", TimeSpan.FromSeconds(30)),
            MetricsRetention = Retention("MANAGER_METRICS_RETENTION", TimeSpan.FromDays(7)),
            DeadLetterRetention = Retention("MANAGER_DEAD_LETTER_RETENTION", TimeSpan.FromDays(30)),
            Policy = policy,
            MaxRedispatches = Int("MANAGER_MAX_REDISPATCHES", 3, 0, 1000),
            RedispatchResetAfter = ZeroOrDuration("MANAGER_REDISPATCH_RESET_AFTER", TimeSpan.FromMinutes(10), "10m or 1h", "to count every re-dispatch"),
            OfflineRedispatchDelay = ZeroOrDuration("MANAGER_OFFLINE_REDISPATCH_DELAY", TimeSpan.FromSeconds(2), "2s or 500ms", "to re-dispatch at once"),
            PluginDir = pluginDir,
            LogLevel = logLevel,
            PostgresConnectionString = connectionString,
            PostgresSchema = Schema(Get("EventStore:Schema") ?? Get("MANAGER_POSTGRES_SCHEMA")),
        };
        foreach (var (name, value) in new[] { ("MANAGER_TENANT_ID", config.Tenant), ("MANAGER_CHANNEL_ID", config.Channel), ("MANAGER_MQTT_SHARE_GROUP", config.MqttShareGroup ?? "") })
        {
            if (value.IndexOfAny(['/', '+', '#']) >= 0)
            {
                errors.Add($"{name} must not contain '/', '+' or '#' (it is part of the MQTT topics; got '{value}')");
            }
        }

        if (errors.Count > 0)
        {
            throw new ManagerConfigurationException(errors);
        }

        return config;

        T Fail<T>(T fallback, string error)
        {
            errors.Add(error);
            return fallback;
        }
    }

    /// <summary>
    /// The HTTPS certificate from MANAGER_HTTP_SERVER_CERT and MANAGER_HTTP_SERVER_KEY (PEM), or null when neither is set.
    /// The original serves HTTPS when either is set and then fails on the missing one; here that is a configuration error.
    /// </summary>
    private static X509Certificate2? LoadHttpsCertificate(string? certFile, string? keyFile, List<string> errors)
    {
        if (certFile is null && keyFile is null)
        {
            return null;
        }

        if (certFile is null || keyFile is null)
        {
            errors.Add("MANAGER_HTTP_SERVER_CERT and MANAGER_HTTP_SERVER_KEY must be given together (PEM files; HTTPS is served with both)");
            return null;
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(certFile, keyFile);
            if (!pem.HasPrivateKey)
            {
                errors.Add($"MANAGER_HTTP_SERVER_KEY {keyFile} holds no private key for the certificate in {certFile}");
                return null;
            }

            // A PEM key is ephemeral; SslStream on Windows needs it in a key store, so it goes through PKCS#12 (as Kestrel's
            // own PEM loading does). On Linux this is a copy.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            errors.Add($"MANAGER_HTTP_SERVER_CERT {certFile} / MANAGER_HTTP_SERVER_KEY {keyFile} cannot be read as a PEM certificate and its key: {ex.Message}");
            return null;
        }
    }

    private static bool ValidBrokerAddress(string address)
    {
        try
        {
            var options = new BrokerOptions().WithAddress(address);
            return options.Host.Length > 0 && options.Port is > 0 and <= 65535;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}

/// <summary>The manager's settings are invalid; <see cref="Errors"/> lists every problem, each naming its variable.</summary>
internal sealed class ManagerConfigurationException(IReadOnlyList<string> errors)
    : Exception("invalid configuration:" + string.Concat(errors.Select(e => Environment.NewLine + "  - " + e)))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

/// <summary>Wolverine's durability mode (MANAGER_DURABILITY_MODE; ADR 0014).</summary>
internal enum DurabilityModeSetting
{
    /// <summary>Several nodes on one database: leader election, agent assignment, dead nodes' messages recovered.</summary>
    Balanced,

    /// <summary>One node per database: everything runs here, a restart recovers its own messages at once.</summary>
    Solo,
}

