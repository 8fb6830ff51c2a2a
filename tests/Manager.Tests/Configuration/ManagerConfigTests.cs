using Microsoft.Extensions.Configuration;
using Propeller.Application.Scheduling;
using Propeller.Manager.Configuration;
using MQTTnet.Protocol;

namespace Propeller.Manager.Tests.Configuration;

public sealed class ManagerConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("manager-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ManagerConfig Load(params (string Key, string Value)[] settings) =>
        ManagerConfig.Load(new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build(), _dir);

    [Fact]
    public void Defaults_AreTheOriginals_WhereTheyMakeSense()
    {
        var config = Load();

        config.HttpHost.ShouldBe("localhost");
        config.HttpPort.ShouldBe(7070);
        config.MqttQos.ShouldBe(MqttQualityOfServiceLevel.ExactlyOnce);
        config.MqttTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        config.LivenessWindow.ShouldBe(TimeSpan.FromSeconds(30));
        config.ReconnectAllowance.ShouldBe(TimeSpan.FromSeconds(60));
        config.Policy.ShouldBe(SchedulingPolicy.RoundRobin);
        config.MqttAddress.ShouldBeNull();
        config.PostgresConnectionString.ShouldContain("Host=localhost");
    }

    [Fact]
    public void Settings_AreRead_WithGoDurations()
    {
        var config = Load(
            ("MANAGER_HTTP_PORT", "8080"), ("MANAGER_MQTT_ADDRESS", "tcp://broker:1883"), ("MANAGER_MQTT_QOS", "1"), ("MANAGER_MQTT_TIMEOUT", "1m30s"),
            ("MANAGER_PROPLET_LIVENESS_WINDOW", "45s"), ("MANAGER_PROPLET_RECONNECT_ALLOWANCE", "2m"), ("MANAGER_SCHEDULER_POLICY", "least-loaded"), ("MANAGER_POSTGRES_PORT", "6543"), ("MANAGER_LOG_LEVEL", "debug"));

        config.HttpPort.ShouldBe(8080);
        config.MqttAddress.ShouldBe("tcp://broker:1883");
        config.MqttQos.ShouldBe(MqttQualityOfServiceLevel.AtLeastOnce);
        config.MqttTimeout.ShouldBe(TimeSpan.FromSeconds(90));
        config.LivenessWindow.ShouldBe(TimeSpan.FromSeconds(45));
        config.ReconnectAllowance.ShouldBe(TimeSpan.FromMinutes(2));
        config.Policy.ShouldBe(SchedulingPolicy.LeastLoaded);
        config.PostgresConnectionString.ShouldContain("Port=6543");
        config.LogLevel.ShouldBe(Microsoft.Extensions.Logging.LogLevel.Debug);
    }

    [Fact]
    public void EveryInvalidSetting_IsReportedAtOnce_NamingItsVariable()
    {
        var ex = Should.Throw<ManagerConfigurationException>(() => Load(
            ("MANAGER_HTTP_PORT", "seventy"), ("MANAGER_MQTT_QOS", "3"), ("MANAGER_MQTT_TIMEOUT", "soon"), ("MANAGER_SCHEDULER_POLICY", "random"),
            ("MANAGER_STORAGE_TYPE", "badger"), ("MANAGER_TENANT_ID", "a/b"), ("MANAGER_MQTT_ADDRESS", "tcp://:99999"), ("MANAGER_LOG_LEVEL", "loud"),
            ("MANAGER_EVENT_STORE", "1")));

        ex.Errors.Count.ShouldBe(9);
        foreach (var name in new[] { "MANAGER_HTTP_PORT", "MANAGER_MQTT_QOS", "MANAGER_MQTT_TIMEOUT", "MANAGER_SCHEDULER_POLICY", "MANAGER_STORAGE_TYPE", "MANAGER_TENANT_ID", "MANAGER_MQTT_ADDRESS", "MANAGER_LOG_LEVEL", "MANAGER_EVENT_STORE" })
        {
            ex.Message.ShouldContain(name);
        }
    }

    /// <summary>
    /// A broker address in paho's TLS schemes (tcps://, mqtt+ssl://, as ssl://, tls://, mqtts://) is TLS on 8883; a
    /// transport this client does not speak (ws://, wss://) is a configuration error. Before, every scheme but ssl, tls
    /// and mqtts was plain TCP on 1883: MANAGER_API_KEY went in clear to a broker named tcps:// or wss://.
    /// </summary>
    [Theory]
    [InlineData("tcps://broker", true, 8883)]
    [InlineData("mqtt+ssl://broker:8884", true, 8884)]
    [InlineData("mqtts://broker", true, 8883)]
    [InlineData("mqtt://broker", false, 1883)]
    [InlineData("tcp://broker:1884", false, 1884)]
    public void ABrokerAddress_IsTlsInEveryTlsSchemeOfPaho(string address, bool tls, int port)
    {
        Load(("MANAGER_MQTT_ADDRESS", address)).MqttAddress.ShouldBe(address);
        var options = new Propeller.Broker.BrokerOptions().WithAddress(address);
        (options.Tls is not null, options.Port).ShouldBe((tls, port));
    }

    /// <summary>
    /// The broker TLS files are read at start, as the connection reads them: a CA file that is no PEM, or a client key
    /// that is not the certificate's, is a configuration error naming the variables. Before, only their existence was
    /// checked, and the first connect failed, retried for ever in the log while the manager looked up.
    /// </summary>
    [Fact]
    public void BrokerTlsFilesThatDoNotLoad_AreConfigurationErrors()
    {
        using var files = new Propeller.Tests.Shared.TlsFiles();

        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_MQTT_TLS_CA_CERT", files.Garbage))).Message.ShouldContain("MANAGER_MQTT_TLS_CA_CERT");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_MQTT_TLS_CLIENT_CERT", files.Certificate), ("MANAGER_MQTT_TLS_CLIENT_KEY", files.OtherKey)))
            .Message.ShouldContain("MANAGER_MQTT_TLS_CLIENT_CERT and MANAGER_MQTT_TLS_CLIENT_KEY");
        var config = Load(("MANAGER_MQTT_TLS_CA_CERT", files.Certificate), ("MANAGER_MQTT_TLS_CLIENT_CERT", files.Certificate), ("MANAGER_MQTT_TLS_CLIENT_KEY", files.Key));
        config.MqttTls.ShouldNotBeNull().ClientKeyFile.ShouldBe(files.Key);
    }

    [Theory]
    [InlineData("wss://broker")]
    [InlineData("ws://broker:8080")]
    public void AWebSocketBrokerAddress_IsAConfigurationError(string address) =>
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_MQTT_ADDRESS", address))).Message.ShouldContain("MANAGER_MQTT_ADDRESS");

    /// <summary>A setting of spaces alone is unset: its default applies (it was read as empty: topics m//c/…, an empty
    /// MQTT client id, an HTTP host Kestrel refused without naming the setting).</summary>
    [Fact]
    public void ASettingOfSpacesAlone_IsUnset()
    {
        var config = Load(("MANAGER_TENANT_ID", "  "), ("MANAGER_HTTP_HOST", " "), ("MANAGER_ENTITY_ID", "\t"), ("MANAGER_POSTGRES_HOST", " "));

        (config.Tenant, config.HttpHost, config.PostgresConnectionString.Contains("Host=localhost", StringComparison.Ordinal)).ShouldBe((Load().Tenant, "localhost", true));
        config.EntityId.ShouldBe(Load().EntityId);
    }

    /// <summary>MANAGER_NODE_STALE_TIMEOUT is at least a second: a node marks its session alive every fifth of it, at
    /// least 100 ms apart, so at 100 ms every live node's session was stale and claimed by the others, back and forth.</summary>
    [Fact]
    public void ANodeStaleTimeoutBelowASecond_IsAConfigurationError()
    {
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_NODE_STALE_TIMEOUT", "100ms"))).Message.ShouldContain("MANAGER_NODE_STALE_TIMEOUT must be at least 1s");
        Load(("MANAGER_NODE_STALE_TIMEOUT", "1s")).NodeStaleTimeout.ShouldBe(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void TheDeletedStoreAndWriteSide_AreRefusedClearly()
    {
        Load(("MANAGER_PIPELINE", "wolverine")).ShouldNotBeNull();
        Load(("MANAGER_EVENT_STORE", "marten")).ShouldNotBeNull();
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_EVENT_STORE", "own"))).Message.ShouldContain("MANAGER_EVENT_STORE=own is no longer available");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_PIPELINE", "own"))).Message.ShouldContain("MANAGER_PIPELINE=own is no longer available");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_PIPELINE", "mediator"))).Message.ShouldContain("MANAGER_PIPELINE must be wolverine or unset");
    }

    [Fact]
    public void DurabilityMode_IsBalancedOrSolo_FromTheEnvironmentOrConfigToml()
    {
        var wolverine = ("MANAGER_PIPELINE", "wolverine"); // still accepted (the only write side)
        Load().Durability.ShouldBe(DurabilityModeSetting.Balanced);
        Load(wolverine).NodeStaleTimeout.ShouldBe(TimeSpan.FromSeconds(10));
        Load(wolverine, ("MANAGER_DURABILITY_MODE", "Solo")).Durability.ShouldBe(DurabilityModeSetting.Solo);
        Load(wolverine, ("MANAGER_NODE_STALE_TIMEOUT", "30s")).NodeStaleTimeout.ShouldBe(TimeSpan.FromSeconds(30));

        File.WriteAllText(Path.Combine(_dir, "config.toml"), "[manager]\ndurability_mode = \"solo\"\n");
        Load(wolverine).Durability.ShouldBe(DurabilityModeSetting.Solo);
        Load(wolverine, ("MANAGER_DURABILITY_MODE", "balanced")).Durability.ShouldBe(DurabilityModeSetting.Balanced);
        Load().Durability.ShouldBe(DurabilityModeSetting.Solo);
        File.Delete(Path.Combine(_dir, "config.toml"));

        Should.Throw<ManagerConfigurationException>(() => Load(wolverine, ("MANAGER_DURABILITY_MODE", "cluster"))).Message
            .ShouldContain("MANAGER_DURABILITY_MODE (or durability_mode in config.toml [manager]) must be solo or balanced (got 'cluster')");
        Should.Throw<ManagerConfigurationException>(() => Load(wolverine, ("MANAGER_NODE_STALE_TIMEOUT", "soon"))).Message.ShouldContain("MANAGER_NODE_STALE_TIMEOUT must be a positive duration");
    }

    [Fact]
    public void ShareGroup_IsTheSuggestedOneIfTheBrokerOffersIt_SetFromTheEnvironmentOrConfigToml_AndEmptyOrNoneTurnsItOff()
    {
        Load().MqttShareGroup.ShouldBe("propeller-manager");
        Load().MqttShareGroupIfOffered.ShouldBeTrue();
        Load(("MANAGER_MQTT_SHARE_GROUP", "propeller-manager")).MqttShareGroupIfOffered.ShouldBeFalse("a group named is used whatever the broker announces");
        Load(("MANAGER_MQTT_SHARE_GROUP", "nodes")).MqttShareGroup.ShouldBe("nodes");

        File.WriteAllText(Path.Combine(_dir, "config.toml"), "[manager]\nmqtt_share_group = \"nodes\"\n");
        Load().MqttShareGroup.ShouldBe("nodes");
        Load(("MANAGER_MQTT_SHARE_GROUP", "")).MqttShareGroup.ShouldBeNull("an empty value set in the environment turns the group off");
        File.WriteAllText(Path.Combine(_dir, "config.toml"), "[manager]\nmqtt_share_group = \"\"\n");
        Load().MqttShareGroup.ShouldBeNull("an empty value in config.toml turns the group off");
        File.Delete(Path.Combine(_dir, "config.toml"));
        Load(("MANAGER_MQTT_SHARE_GROUP", "none")).MqttShareGroup.ShouldBeNull();

        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_MQTT_SHARE_GROUP", "a/b"))).Message.ShouldContain("MANAGER_MQTT_SHARE_GROUP must not contain");
    }

    [Theory]
    [InlineData("propeller", "propeller")]
    [InlineData("Propeller_Prod", "propeller_prod")]
    [InlineData("_x9", "_x9")]
    public void PostgresSchema_IsFoldedToLowerCaseAsPostgresFoldsAnUnquotedName(string raw, string schema) =>
        Load(("MANAGER_POSTGRES_SCHEMA", raw)).PostgresSchema.ShouldBe(schema);

    [Theory]
    [InlineData("prod-1")]
    [InlineData("9lives")]
    [InlineData("a.b")]
    [InlineData("sch\u00e9ma")]
    [InlineData("a2345678901234567890123456789012345678901234567890123456")]
    public void PostgresSchema_ThatIsNoPlainName_IsAConfigurationError(string raw) =>
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_POSTGRES_SCHEMA", System.Text.RegularExpressions.Regex.Unescape(raw))))
            .Message.ShouldContain("MANAGER_POSTGRES_SCHEMA must be a letter or '_' followed by letters, digits or '_', at most 55 characters");

    [Fact]
    public void TrustedOrigins_AreReadAsBrowsersSendThem()
    {
        Load().HttpTrustedOrigins.ShouldBeEmpty();
        Load(("MANAGER_HTTP_TRUSTED_ORIGINS", " https://Ops.Example.com , http://10.0.0.5:8080,")).HttpTrustedOrigins
            .ShouldBe(["https://ops.example.com", "http://10.0.0.5:8080"]);
    }

    [Theory]
    [InlineData("ops.example.com")]
    [InlineData("https://ops.example.com/")]
    [InlineData("https://ops.example.com/ui")]
    [InlineData("ftp://ops.example.com")]
    [InlineData("https://user@ops.example.com")]
    public void ATrustedOriginThatIsNoOrigin_IsAConfigurationError(string raw) =>
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_HTTP_TRUSTED_ORIGINS", raw)))
            .Message.ShouldContain($"MANAGER_HTTP_TRUSTED_ORIGINS must list origins such as https://ops.example.com or http://host:8080, with no path (got '{raw}')");

    [Fact]
    public void MissingCredentials_ComeFromConfigToml_EnvironmentWins()
    {
        File.WriteAllText(Path.Combine(_dir, "config.toml"), """
            # written by the provisioning tool
            [manager]
            tenant_id = "tenant-from-file"
            channel_id = 'channel-from-file'
            entity_id = "entity-from-file" # trailing comment
            api_key = "key-from-file"

            [proplet]
            id = "ignored"
            """);

        var config = Load(("MANAGER_ENTITY_ID", "entity-from-env"));

        config.Tenant.ShouldBe("tenant-from-file");
        config.Channel.ShouldBe("channel-from-file");
        config.EntityId.ShouldBe("entity-from-env");
        config.ApiKey.ShouldBe("key-from-file");
    }

    [Fact]
    public void TheOriginalDocsIdentityNames_AreAccepted_TheCodesNamesWin()
    {
        File.WriteAllText(Path.Combine(_dir, "config.toml"), """
            [manager]
            domain_id = "domain-from-file"
            client_key = "key-from-file"
            """);

        var config = Load(("MANAGER_CLIENT_ID", "client-from-env"), ("MANAGER_CHANNEL_ID", "c"), ("MANAGER_MQTT_PROTOCOL_VERSION", "3.1.1"));

        config.Tenant.ShouldBe("domain-from-file");
        config.EntityId.ShouldBe("client-from-env");
        config.ApiKey.ShouldBe("key-from-file");
        config.MqttProtocolVersion.ShouldBe(MQTTnet.Formatter.MqttProtocolVersion.V311);
        Load(("MANAGER_ENTITY_ID", "entity"), ("MANAGER_CLIENT_ID", "client"), ("MANAGER_DOMAIN_ID", "domain"), ("MANAGER_TENANT_ID", "tenant"))
            .ShouldSatisfyAllConditions(c => c.EntityId.ShouldBe("entity"), c => c.Tenant.ShouldBe("tenant"));
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_MQTT_PROTOCOL_VERSION", "4.0"))).Message.ShouldContain("MANAGER_MQTT_PROTOCOL_VERSION");
    }

    [Fact]
    public void HttpsCertificateAndKey_AreReadTogether_OneAloneOrAnUnreadableFileIsAnError()
    {
        var (certFile, keyFile, thumbprint) = Http.HttpServerSettingsTests.WriteSelfSignedPem(_dir);

        Load().HttpsCertificate.ShouldBeNull();
        Load(("MANAGER_HTTP_SERVER_CERT", certFile), ("MANAGER_HTTP_SERVER_KEY", keyFile)).HttpsCertificate!.Thumbprint.ShouldBe(thumbprint);

        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_HTTP_SERVER_CERT", certFile)))
            .Message.ShouldContain("MANAGER_HTTP_SERVER_CERT and MANAGER_HTTP_SERVER_KEY must be given together");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_HTTP_SERVER_KEY", keyFile)))
            .Message.ShouldContain("MANAGER_HTTP_SERVER_CERT and MANAGER_HTTP_SERVER_KEY must be given together");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_HTTP_SERVER_CERT", Path.Combine(_dir, "missing.crt")), ("MANAGER_HTTP_SERVER_KEY", keyFile)))
            .Message.ShouldContain("cannot be read as a PEM certificate and its key");
        var notPem = Path.Combine(_dir, "not.pem");
        File.WriteAllText(notPem, "not a certificate");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_HTTP_SERVER_CERT", certFile), ("MANAGER_HTTP_SERVER_KEY", notPem)))
            .Message.ShouldContain("MANAGER_HTTP_SERVER_KEY");
    }

    [Fact]
    public void HttpServerLimits_AreReadWhenSet_AndChecked()
    {
        var unset = Load();
        unset.HttpReadHeaderTimeout.ShouldBeNull();
        unset.HttpIdleTimeout.ShouldBeNull();
        unset.HttpMaxHeaderBytes.ShouldBeNull();

        var set = Load(("MANAGER_HTTP_SERVER_READ_HEADER_TIMEOUT", "5s"), ("MANAGER_HTTP_SERVER_IDLE_TIMEOUT", "1m"), ("MANAGER_HTTP_SERVER_MAX_HEADER_BYTES", "1048576"));
        set.HttpReadHeaderTimeout.ShouldBe(TimeSpan.FromSeconds(5));
        set.HttpIdleTimeout.ShouldBe(TimeSpan.FromMinutes(1));
        set.HttpMaxHeaderBytes.ShouldBe(1048576);

        var ex = Should.Throw<ManagerConfigurationException>(() => Load(
            ("MANAGER_HTTP_SERVER_READ_HEADER_TIMEOUT", "soon"), ("MANAGER_HTTP_SERVER_IDLE_TIMEOUT", "0s"), ("MANAGER_HTTP_SERVER_MAX_HEADER_BYTES", "-1")));
        ex.Errors.Count.ShouldBe(3);
    }

    [Fact]
    public void Retentions_HaveDefaults_ZeroKeepsEverything_AndABadValueIsNamed()
    {
        Load().MetricsRetention.ShouldBe(TimeSpan.FromDays(7));
        Load(("MANAGER_METRICS_RETENTION", "0")).MetricsRetention.ShouldBe(TimeSpan.Zero);
        Load(("MANAGER_METRICS_RETENTION", "2160h")).MetricsRetention.ShouldBe(TimeSpan.FromDays(90));

        var ex = Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_METRICS_RETENTION", "a week")));
        ex.Errors.ShouldHaveSingleItem().ShouldStartWith("MANAGER_METRICS_RETENTION must be a duration");
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_METRICS_RETENTION", "-1h")));
        Load().DeadLetterRetention.ShouldBe(TimeSpan.FromDays(30));
        Load(("MANAGER_DEAD_LETTER_RETENTION", "0")).DeadLetterRetention.ShouldBe(TimeSpan.Zero);
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_DEAD_LETTER_RETENTION", "soon")));
    }

    [Fact]
    public void RedispatchResetAfter_DefaultsToTenMinutes_ZeroCountsEveryOne_AndABadValueIsNamed()
    {
        Load().RedispatchResetAfter.ShouldBe(TimeSpan.FromMinutes(10));
        Load(("MANAGER_REDISPATCH_RESET_AFTER", "0")).RedispatchResetAfter.ShouldBe(TimeSpan.Zero);
        Load(("MANAGER_REDISPATCH_RESET_AFTER", "1h")).RedispatchResetAfter.ShouldBe(TimeSpan.FromHours(1));
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_REDISPATCH_RESET_AFTER", "later"))).Errors.ShouldHaveSingleItem()
            .ShouldBe("MANAGER_REDISPATCH_RESET_AFTER must be a duration such as 10m or 1h, or 0 to count every re-dispatch (got 'later')");
    }

    [Fact]
    public void OfflineRedispatchDelay_DefaultsToTwoSeconds_ZeroIsAtOnce_AndABadValueIsNamed()
    {
        Load().OfflineRedispatchDelay.ShouldBe(TimeSpan.FromSeconds(2));
        Load(("MANAGER_OFFLINE_REDISPATCH_DELAY", "0")).OfflineRedispatchDelay.ShouldBe(TimeSpan.Zero);
        Load(("MANAGER_OFFLINE_REDISPATCH_DELAY", "500ms")).OfflineRedispatchDelay.ShouldBe(TimeSpan.FromMilliseconds(500));
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_OFFLINE_REDISPATCH_DELAY", "-1s"))).Errors.ShouldHaveSingleItem()
            .ShouldBe("MANAGER_OFFLINE_REDISPATCH_DELAY must be a duration such as 2s or 500ms, or 0 to re-dispatch at once (got '-1s')");
    }

    [Fact]
    public void Durations_AreBoundedByWhatATimerTakes_NamingTheVariable()
    {
        var longest = Load(("MANAGER_INVOKE_TIMEOUT", "1193h"), ("MANAGER_MQTT_TIMEOUT", "1193h"));
        longest.InvokeTimeout.ShouldBe(TimeSpan.FromHours(1193));
        using (var cts = new CancellationTokenSource())
        {
            cts.CancelAfter(TimeSpan.FromMilliseconds(uint.MaxValue - 1)); // the longest accepted value (1193h and a bit) is one a timer takes
        }

        var ex = Should.Throw<ManagerConfigurationException>(() => Load(
            ("MANAGER_INVOKE_TIMEOUT", "1200h"), ("MANAGER_MQTT_TIMEOUT", "1200h"), ("MANAGER_PROPLET_LIVENESS_WINDOW", "2562047h"), ("MANAGER_NODE_STALE_TIMEOUT", "100000h"),
            ("MANAGER_PROPLET_RECONNECT_ALLOWANCE", "2562047h")));

        ex.Errors.Count.ShouldBe(5);
        foreach (var name in new[] { "MANAGER_INVOKE_TIMEOUT", "MANAGER_MQTT_TIMEOUT", "MANAGER_PROPLET_LIVENESS_WINDOW", "MANAGER_NODE_STALE_TIMEOUT", "MANAGER_PROPLET_RECONNECT_ALLOWANCE" })
        {
            ex.Errors.ShouldContain(e => e.StartsWith(name, StringComparison.Ordinal) && e.Contains("at most", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("1", true)]
    [InlineData("t", true)]
    [InlineData("T", true)]
    [InlineData("TRUE", true)]
    [InlineData("True", true)]
    [InlineData("0", false)]
    [InlineData("f", false)]
    [InlineData("F", false)]
    [InlineData("FALSE", false)]
    [InlineData("False", false)]
    public void Booleans_AreReadAsGosParseBoolReadsThem(string value, bool expected) =>
        (Load(("MANAGER_MQTT_TLS_INSECURE_SKIP_VERIFY", value)).MqttTls?.AllowUntrustedCertificates ?? false).ShouldBe(expected);

    [Theory]
    [InlineData("yes")]
    [InlineData("on")]
    [InlineData("tRUE")]
    [InlineData("2")]
    public void ABooleanGosParseBoolRefuses_IsAnError(string value) =>
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_MQTT_TLS_INSECURE_SKIP_VERIFY", value)))
            .Message.ShouldContain("MANAGER_MQTT_TLS_INSECURE_SKIP_VERIFY must be true or false");

    [Fact]
    public void ConfigToml_OnlyItsManagerTableIsParsed_SoOtherTablesMayHoldSyntaxWeDoNotRead()
    {
        File.WriteAllText(Path.Combine(_dir, "config.toml"), """
            top = [1, 2]

            [proplet]
            ports = [1, 2]
            labels = { zone = "a" }
            hosts = [
              "a",
              "b",
            ]

            [[proxy.registries]]
            url = "x"

            [manager]
            durability_mode = "solo"
            mqtt_share_group = "nodes"

            [proxy]
            tags = ["x"]
            """);

        var config = Load(("MANAGER_TENANT_ID", "t"), ("MANAGER_CHANNEL_ID", "c"), ("MANAGER_ENTITY_ID", "e"), ("MANAGER_API_KEY", "k"));

        config.Durability.ShouldBe(DurabilityModeSetting.Solo);
        config.MqttShareGroup.ShouldBe("nodes");
        File.WriteAllText(Path.Combine(_dir, "config.toml"), "[manager]\ntags = [1, 2]\n");
        Should.Throw<ManagerConfigurationException>(() => Load()).Message.ShouldContain("config.toml:2");
    }

    /// <summary>What Npgsql refuses is a configuration error naming the setting (found by ManagerConfigFuzzTests: it was
    /// an ArgumentException or KeyNotFoundException out of Npgsql at start-up).</summary>
    [Theory]
    [InlineData("EventStore:ConnectionString", "AGFzbQEAAAA=", "EventStore:ConnectionString is not a PostgreSQL connection string")]
    [InlineData("EventStore:ConnectionString", "Host=x;Port=abc", "EventStore:ConnectionString is not a PostgreSQL connection string")]
    [InlineData("MANAGER_POSTGRES_PASS", "a\0b", "MANAGER_POSTGRES_PASS must not contain \\u0000")]
    [InlineData("MANAGER_POSTGRES_DB", "\0", "MANAGER_POSTGRES_DB must not contain \\u0000")]
    public void APostgresSettingNpgsqlRefuses_IsAnErrorNamingIt(string key, string value, string error)
    {
        Should.Throw<ManagerConfigurationException>(() => Load((key, value))).Message.ShouldContain(error);
    }

    [Fact]
    public void BrokenConfigToml_IsAnErrorNamingTheLine()
    {
        File.WriteAllText(Path.Combine(_dir, "config.toml"), "[manager]\ntenant_id = unquoted\n");

        var ex = Should.Throw<ManagerConfigurationException>(() => Load());

        ex.Message.ShouldContain("config.toml:2");
        ex.Errors.Count.ShouldBe(1);
        Should.Throw<ManagerConfigurationException>(() => Load(("MANAGER_CONFIG_FILE", "missing.toml"))).Message.ShouldContain("missing.toml");
    }

    [Theory]
    [InlineData("30s", 30_000)]
    [InlineData("1.5s", 1_500)]
    [InlineData("2m30s", 150_000)]
    [InlineData("500ms", 500)]
    [InlineData("1h", 3_600_000)]
    [InlineData("10", 10_000)]
    [InlineData("+30s", 30_000)] // Go takes one leading sign
    [InlineData("1500\u00b5s", 1.5)] // micro sign
    [InlineData("1500\u03bcs", 1.5)] // Greek mu, which Go takes too
    public void GoDurations_Parse(string text, double milliseconds)
    {
        Propeller.Contracts.GoDuration.TryParse(text, out var value).ShouldBeTrue();
        value.TotalMilliseconds.ShouldBe(milliseconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("s")]
    [InlineData("5 minutes")]
    [InlineData("-5s")]
    [InlineData("1d")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("-Infinity")]
    [InlineData("1000000000000")]
    [InlineData("1e400s")] // refused for its unit ("e")
    [InlineData("3000000000000h")] // past TimeSpan's range: the sum's check, not the unit's
    [InlineData("256204779h")] // just past it
    [InlineData("++5s")]
    [InlineData("+")]
    public void BadGoDurations_AreRejected(string text) => Propeller.Contracts.GoDuration.TryParse(text, out _).ShouldBeFalse();
}
