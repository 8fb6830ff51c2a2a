using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;
using MQTTnet.Protocol;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

public sealed class PropletSettingsLoaderTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("proplet-config");

    private static readonly Dictionary<string, string> Identity = new()
    {
        ["PROPLET_TENANT_ID"] = "t1",
        ["PROPLET_CHANNEL_ID"] = "c1",
        ["PROPLET_ENTITY_ID"] = "p1",
        ["PROPLET_API_KEY"] = "k1",
    };

    public void Dispose() => _dir.Delete(true);

    [Fact]
    public void GivenOnlyTheIdentity_WhenLoaded_ThenTheOriginalDefaultsApply()
    {
        var settings = Load(Identity);

        settings.MqttAddress.ShouldBe("tcp://localhost:1883");
        settings.Qos.ShouldBe(MqttQualityOfServiceLevel.ExactlyOnce);
        settings.LivelinessInterval.ShouldBe(TimeSpan.FromSeconds(10));
        settings.MetricsInterval.ShouldBe(TimeSpan.FromSeconds(10));
        settings.KeepAlive.ShouldBe(TimeSpan.FromSeconds(30));
        settings.EnableMonitoring.ShouldBeTrue();
        settings.CollectSystemInfo.ShouldBeTrue();
        settings.Namespace.ShouldBe("default");
        settings.LogLevel.ShouldBe(LogLevel.Information);
        settings.TaskTimeout.ShouldBeNull();
        settings.TaskFuel.ShouldBeNull();
        settings.ImageCacheBytes.ShouldBe(32L << 20);
        settings.BaseTopic.ShouldBe("m/t1/c/c1");
    }

    /// <summary>
    /// Values are trimmed, as the manager's and the proxy's are: a CRLF .env leaves a "\r" at the end of each, and the
    /// proplet subscribed to m/default\r/c/… and was never discovered, silently. A blank value is unset, as an empty one.
    /// </summary>
    [Fact]
    public void GivenIdentityValuesWithCarriageReturns_WhenLoaded_ThenTheyAreTrimmed()
    {
        var settings = Load(new Dictionary<string, string>
        {
            ["PROPLET_TENANT_ID"] = "default\r",
            ["PROPLET_CHANNEL_ID"] = " default\r",
            ["PROPLET_ENTITY_ID"] = "p1\r",
            ["PROPLET_API_KEY"] = "k1\r",
            ["PROPLET_MQTT_ADDRESS"] = "   ",
        });

        settings.BaseTopic.ShouldBe("m/default/c/default");
        settings.EntityId.ShouldBe("p1");
        settings.MqttAddress.ShouldBe("tcp://localhost:1883");
    }

    /// <summary>
    /// The MQTT TLS files are read at load: a client key that is not the certificate's, or a file that is no PEM, is a
    /// configuration error naming the variable (exit 78). Checked only for existing, they stopped the proplet once it had
    /// started, with exit code 0.
    /// </summary>
    [Fact]
    public void GivenTlsFilesThatExistButDoNotLoad_WhenLoaded_ThenEachIsAConfigurationErrorNamingItsVariable()
    {
        using var tls = new TlsFiles();

        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity)
        {
            ["PROPLET_MQTT_TLS_CLIENT_CERT"] = tls.Certificate,
            ["PROPLET_MQTT_TLS_CLIENT_KEY"] = tls.OtherKey,
        })).Message.ShouldStartWith($"PROPLET_MQTT_TLS_CLIENT_CERT '{tls.Certificate}' and PROPLET_MQTT_TLS_CLIENT_KEY '{tls.OtherKey}' cannot be read");
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity)
        {
            ["PROPLET_MQTT_TLS_CLIENT_CERT"] = tls.Garbage,
            ["PROPLET_MQTT_TLS_CLIENT_KEY"] = tls.Key,
        })).Message.ShouldStartWith("PROPLET_MQTT_TLS_CLIENT_CERT");
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity) { ["PROPLET_MQTT_TLS_CA_CERT"] = tls.Garbage }))
            .Message.ShouldStartWith($"PROPLET_MQTT_TLS_CA_CERT: '{tls.Garbage}' cannot be read");
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity) { ["PROPLET_HTTP_TLS_CA_CERT"] = tls.Garbage }))
            .Message.ShouldStartWith($"PROPLET_HTTP_TLS_CA_CERT: '{tls.Garbage}' cannot be read");

        var settings = Load(new Dictionary<string, string>(Identity)
        {
            ["PROPLET_MQTT_TLS_CA_CERT"] = tls.Certificate,
            ["PROPLET_MQTT_TLS_CLIENT_CERT"] = tls.Certificate,
            ["PROPLET_MQTT_TLS_CLIENT_KEY"] = tls.Key,
            ["PROPLET_HTTP_TLS_CA_CERT"] = tls.Certificate,
        });
        (settings.TlsClientCert, settings.TlsClientKey).ShouldBe((tls.Certificate, tls.Key));
    }

    /// <summary>
    /// Any MQTT TLS setting turns TLS on for a tcp:// address, as the manager decides (MANAGER_MQTT_TLS_*): only a CA file
    /// did, and a client certificate or the insecure flag alone left the proplet on plain MQTT.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public async Task GivenMqttTlsSettingsWithoutACaFile_WhenTheConnectionIsConfigured_ThenItUsesTlsOnATcpAddress(bool clientCertificate, bool insecure)
    {
        using var tls = new TlsFiles();
        var env = new Dictionary<string, string>(Identity) { ["PROPLET_MQTT_ADDRESS"] = "tcp://127.0.0.1:1883" };
        if (clientCertificate)
        {
            env["PROPLET_MQTT_TLS_CLIENT_CERT"] = tls.Certificate;
            env["PROPLET_MQTT_TLS_CLIENT_KEY"] = tls.Key;
        }

        if (insecure)
        {
            env["PROPLET_MQTT_TLS_INSECURE_SKIP_VERIFY"] = "true";
        }

        await using var node = new PropletNode(Load(env), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System);

        var options = node.ClientOptions();
        if (!clientCertificate && !insecure)
        {
            options.Tls.ShouldBeNull();
            return;
        }

        var used = options.Tls.ShouldNotBeNull();
        used.CaFile.ShouldBeNull();
        used.ClientCertificateFile.ShouldBe(clientCertificate ? tls.Certificate : null);
        used.ClientKeyFile.ShouldBe(clientCertificate ? tls.Key : null);
        used.AllowUntrustedCertificates.ShouldBe(insecure);
    }

    [Fact]
    public void GivenEveryVariable_WhenLoaded_ThenEachIsRead()
    {
        var settings = Load(new Dictionary<string, string>(Identity)
        {
            ["PROPLET_MQTT_ADDRESS"] = "tcp://10.0.0.1:1884",
            ["PROPLET_MQTT_QOS"] = "1",
            ["PROPLET_LIVELINESS_INTERVAL"] = "10s",
            ["PROPLET_METRICS_INTERVAL"] = "0",
            ["PROPLET_ENABLE_MONITORING"] = "no",
            ["PROPLET_COLLECT_SYSTEM_INFO"] = "maybe",
            ["PROPLET_TAGS"] = " lab , arm ,",
            ["PROPLET_DIRS"] = "/tmp:/var/tmp",
            ["PROPLET_LOG_LEVEL"] = "debug",
            ["PROPLET_MAX_CONCURRENT_TASKS"] = "3",
            ["PROPLET_TASK_FUEL"] = "1000",
            ["PROPLET_TASK_MAX_MEMORY_MIB"] = "16",
            ["PROPLET_TASK_TIMEOUT"] = "2.5",
            ["PROPLET_MANAGER_K8S_NAMESPACE"] = "edge",
            ["PROPLET_IMAGE_CACHE_BYTES"] = "0",
            ["PROPLET_MAX_WAITING_BYTES"] = "1048576",
        });

        settings.MqttAddress.ShouldBe("tcp://10.0.0.1:1884");
        settings.Qos.ShouldBe(MqttQualityOfServiceLevel.AtLeastOnce);
        settings.LivelinessInterval.ShouldBe(TimeSpan.FromSeconds(10));
        settings.MetricsInterval.ShouldBe(TimeSpan.Zero);
        settings.EnableMonitoring.ShouldBeFalse();
        settings.CollectSystemInfo.ShouldBeTrue(); // only 0/false/no/off turn it off
        settings.Tags.ShouldBe(["lab", "arm"]);
        settings.Dirs.ShouldBe(["/tmp", "/var/tmp"]);
        settings.LogLevel.ShouldBe(LogLevel.Debug);
        settings.MaxConcurrentTasks.ShouldBe(3);
        settings.TaskFuel.ShouldBe(1000);
        settings.TaskMaxMemoryMib.ShouldBe(16);
        settings.TaskTimeout.ShouldBe(TimeSpan.FromSeconds(2.5));
        settings.Namespace.ShouldBe("edge");
        settings.ImageCacheBytes.ShouldBe(0);
        settings.MaxWaitingBytes.ShouldBe(1 << 20);
    }

    [Theory]
    [InlineData("PROPLET_LIVELINESS_INTERVAL", "0", "PROPLET_LIVELINESS_INTERVAL '0' must be a number of seconds (at least 1)")]
    [InlineData("PROPLET_LIVELINESS_INTERVAL", "0.0005", "PROPLET_LIVELINESS_INTERVAL '0.0005' must be a number of seconds (at least 1)")]
    [InlineData("PROPLET_LIVELINESS_INTERVAL", "0.5", "PROPLET_LIVELINESS_INTERVAL '0.5' must be a number of seconds (at least 1)")]
    [InlineData("PROPLET_METRICS_INTERVAL", "0.0005", "PROPLET_METRICS_INTERVAL '0.0005' must be a number of seconds (0, or at least 1)")]
    [InlineData("PROPLET_METRICS_INTERVAL", "0.001", "PROPLET_METRICS_INTERVAL '0.001' must be a number of seconds (0, or at least 1)")]
    [InlineData("PROPLET_MQTT_KEEP_ALIVE", "70000", "PROPLET_MQTT_KEEP_ALIVE '70000' must be a whole number of seconds from 0 (keep-alive off) to 65535")]
    [InlineData("PROPLET_MQTT_KEEP_ALIVE", "0.5", "PROPLET_MQTT_KEEP_ALIVE '0.5' must be a whole number of seconds")]
    [InlineData("PROPLET_MQTT_KEEP_ALIVE", "-1", "PROPLET_MQTT_KEEP_ALIVE '-1' must be a whole number of seconds")]
    [InlineData("PROPLET_MAX_BINARY_SIZE", "3000000000", "PROPLET_MAX_BINARY_SIZE '3000000000' must be an integer from 1 to 2147483591")]
    [InlineData("PROPLET_TASK_TIMEOUT", "5000000", "PROPLET_TASK_TIMEOUT '5000000' must be a number of seconds (0, or at least 0.001: timers tick in milliseconds), at most 4294967")]
    [InlineData("PROPLET_MQTT_QOS", "3", "PROPLET_MQTT_QOS '3' must be an integer from 0 to 2")]
    [InlineData("PROPLET_MAX_CONCURRENT_TASKS", "many", "PROPLET_MAX_CONCURRENT_TASKS 'many' must be an integer")]
    [InlineData("PROPLET_LOG_LEVEL", "loud", "PROPLET_LOG_LEVEL 'loud' is not one of")]
    [InlineData("PROPLET_IMAGE_CACHE_BYTES", "-1", "PROPLET_IMAGE_CACHE_BYTES '-1' must be an integer from 0 to")]
    [InlineData("PROPLET_MAX_WAITING_BYTES", "1000", "PROPLET_MAX_WAITING_BYTES '1000' must be an integer from 1048576 to")]
    [InlineData("PROPLET_MQTT_ADDRESS", "tcp://", "PROPLET_MQTT_ADDRESS 'tcp://' is not an MQTT address")]
    [InlineData("PROPLET_MQTT_TLS_CA_CERT", "/no/such/ca.pem", "PROPLET_MQTT_TLS_CA_CERT: file '/no/such/ca.pem' does not exist")]
    public void GivenAMalformedValue_WhenLoaded_ThenTheErrorNamesTheVariable(string name, string value, string expected)
    {
        var env = new Dictionary<string, string>(Identity) { [name] = value };
        Should.Throw<ConfigurationException>(() => Load(env)).Message.ShouldStartWith(expected);
    }

    [Theory]
    [InlineData("45", 45)]
    [InlineData("45s", 45)]
    [InlineData("0", 0)]
    [InlineData("65535", 65535)]
    public void GivenAKeepAliveInRange_WhenLoaded_ThenItIsWholeSeconds(string value, int expected)
    {
        var env = new Dictionary<string, string>(Identity) { ["PROPLET_MQTT_KEEP_ALIVE"] = value };
        Load(env).KeepAlive.ShouldBe(TimeSpan.FromSeconds(expected));
    }

    /// <summary>
    /// PROPLET_METRICS_PORT=0, a value the original accepted (spec §4.2: "0 or invalid → warning, default kept"), keeps
    /// the default port with a warning instead of stopping the proplet as a malformed value does; a value out of range
    /// stays an error.
    /// </summary>
    [Fact]
    public void GivenMetricsPortZero_WhenLoaded_ThenTheDefaultIsKeptWithAWarning()
    {
        var settings = Load(new Dictionary<string, string>(Identity) { ["PROPLET_METRICS_PORT"] = "0" });

        settings.MetricsPort.ShouldBe(9092);
        settings.Warnings.ShouldHaveSingleItem().ShouldBe("PROPLET_METRICS_PORT '0' is not a port; the default 9092 is kept");
        Load(Identity).Warnings.ShouldBeEmpty();
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity) { ["PROPLET_METRICS_PORT"] = "70000" }))
            .Message.ShouldStartWith("PROPLET_METRICS_PORT '70000' must be an integer from 0 to 65535");
    }

    [Fact]
    public void GivenIntervalsOfASecondOrMore_WhenLoaded_ThenTheyAreKept()
    {
        var env = new Dictionary<string, string>(Identity) { ["PROPLET_LIVELINESS_INTERVAL"] = "1", ["PROPLET_METRICS_INTERVAL"] = "1.5s" };
        var settings = Load(env);
        settings.LivelinessInterval.ShouldBe(TimeSpan.FromSeconds(1));
        settings.MetricsInterval.ShouldBe(TimeSpan.FromSeconds(1.5));
    }

    [Fact]
    public void GivenAnIncompleteEnvironment_WhenTheConfigFileHasTheSection_ThenOnlyTheEmptyFieldsComeFromIt()
    {
        var file = Path.Combine(_dir.FullName, "config.toml");
        File.WriteAllText(file, """
            [proplet]
            tenant_id = "file-tenant"
            entity_id = "file-entity"
            api_key = "file-key"
            channel_id = "file-channel"
            """);

        var settings = Load(new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = file, ["PROPLET_ENTITY_ID"] = "env-entity" });

        settings.TenantId.ShouldBe("file-tenant");
        settings.EntityId.ShouldBe("env-entity");
        settings.ApiKey.ShouldBe("file-key");
        settings.ChannelId.ShouldBe("file-channel");
    }

    [Fact]
    public void GivenTheOriginalDocsIdentityNames_WhenLoaded_ThenTheyAreRead_AndTheCodesNamesWin()
    {
        var settings = Load(new Dictionary<string, string>
        {
            ["PROPLET_DOMAIN_ID"] = "domain",
            ["PROPLET_CLIENT_ID"] = "client",
            ["PROPLET_CLIENT_KEY"] = "client-key",
            ["PROPLET_API_KEY"] = "api-key",
            ["PROPLET_CHANNEL_ID"] = "c1",
            ["PROPLET_MQTT_PROTOCOL_VERSION"] = "3.1.1",
            ["PROPLET_MQTT_TIMEOUT"] = "5s",
        });

        settings.TenantId.ShouldBe("domain");
        settings.EntityId.ShouldBe("client");
        settings.ApiKey.ShouldBe("api-key");
        settings.MqttProtocolVersion.ShouldBe(MQTTnet.Formatter.MqttProtocolVersion.V311);
        settings.MqttTimeout.ShouldBe(TimeSpan.FromSeconds(5));
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity) { ["PROPLET_MQTT_PROTOCOL_VERSION"] = "6" }))
            .Message.ShouldContain("PROPLET_MQTT_PROTOCOL_VERSION");
    }

    [Fact]
    public void GivenTheOriginalDocsIdentityKeysInTheConfigFile_WhenLoaded_ThenTheyAreRead()
    {
        var file = Path.Combine(_dir.FullName, "config.toml");
        File.WriteAllText(file, """
            [proplet]
            domain_id = "file-domain"
            client_id = "file-client"
            client_key = "file-key"
            channel_id = "file-channel"
            """);

        var settings = Load(new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = file });

        settings.TenantId.ShouldBe("file-domain");
        settings.EntityId.ShouldBe("file-client");
        settings.ApiKey.ShouldBe("file-key");
    }

    [Fact]
    public void GivenAConfigFileWithoutTheSectionOrAKey_WhenLoaded_ThenTheErrorSaysWhich()
    {
        var file = Path.Combine(_dir.FullName, "config.toml");
        File.WriteAllText(file, "[proxy]\ntenant_id = \"x\"\n");
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = file }))
            .Message.ShouldBe($"config file '{file}' has no [proplet] section");

        File.WriteAllText(file, "[edge]\ntenant_id = \"x\"\nentity_id = \"e\"\napi_key = 3\nchannel_id = \"c\"\n");
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = file, ["PROPLET_CONFIG_SECTION"] = "edge" }))
            .Message.ShouldContain("api_key must be a string");
    }

    [Fact]
    public void GivenNoIdentityAnywhere_WhenLoaded_ThenTheMissingFieldsAreListed()
    {
        var file = Path.Combine(_dir.FullName, "config.toml");
        File.WriteAllText(file, "[proplet]\ntenant_id = \"\"\nentity_id = \"\"\napi_key = \"k\"\nchannel_id = \"\"\n");

        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = file }))
            .Message.ShouldBe("missing required proplet configuration: tenant_id/PROPLET_TENANT_ID, entity_id/PROPLET_ENTITY_ID, channel_id/PROPLET_CHANNEL_ID");
    }

    [Theory]
    [InlineData("1", false, true)]
    [InlineData("YES", false, true)]
    [InlineData("on", false, true)]
    [InlineData("2", false, false)]
    [InlineData("off", true, false)]
    [InlineData("whatever", true, false)]
    [InlineData("whatever", false, false)]
    public void GivenTheOriginalsTruthyRule_WhenAValueIsRead_ThenItMatches(string value, bool defaultValue, bool expected)
    {
        PropletSettingsLoader.Truthy(value, defaultValue).ShouldBe(expected);
    }

    [Fact]
    public void GivenBooleansNeitherTrueNorFalse_WhenLoaded_ThenTheyAreReadAsTheOriginalReadsThem()
    {
        // Spec §4.2: anything but 1/true/yes/on is false, also where the default is true; only
        // PROPLET_COLLECT_SYSTEM_INFO is false for 0/false/no/off alone.
        var settings = Load(new Dictionary<string, string>(Identity)
        {
            ["PROPLET_ENABLE_MONITORING"] = "enabled",
            ["PROPLET_METRICS_ENABLED"] = "maybe",
            ["PROPLET_HTTP_ENABLED"] = "On",
            ["PROPLET_COLLECT_SYSTEM_INFO"] = "maybe",
        });

        settings.EnableMonitoring.ShouldBeFalse();
        settings.MetricsEnabled.ShouldBeFalse();
        settings.HttpEnabled.ShouldBeTrue();
        settings.CollectSystemInfo.ShouldBeTrue();
        Load(new Dictionary<string, string>(Identity) { ["PROPLET_COLLECT_SYSTEM_INFO"] = "Off" }).CollectSystemInfo.ShouldBeFalse();
    }

    [Fact]
    public void GivenAMalformedCleanSessionFlag_WhenLoaded_ThenItIsAnError()
    {
        // PROPLET_MQTT_CLEAN_SESSION is ours (not the original's), so a malformed value stops the proplet.
        Load(new Dictionary<string, string>(Identity) { ["PROPLET_MQTT_CLEAN_SESSION"] = "no" }).CleanSession.ShouldBeFalse();
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity) { ["PROPLET_MQTT_CLEAN_SESSION"] = "maybe" }))
            .Message.ShouldContain("PROPLET_MQTT_CLEAN_SESSION");
    }

    [Theory]
    [InlineData("PROPLET_TENANT_ID", "+")]
    [InlineData("PROPLET_TENANT_ID", "a/b")]
    [InlineData("PROPLET_CHANNEL_ID", "#")]
    [InlineData("PROPLET_CHANNEL_ID", "c+")]
    public void GivenATopicWildcardOrSlashInTheTenantOrChannel_WhenLoaded_ThenItIsRefused(string variable, string value)
    {
        Should.Throw<ConfigurationException>(() => Load(new Dictionary<string, string>(Identity) { [variable] = value }))
            .Message.ShouldBe($"{variable} must not contain '/', '+' or '#' (it is part of the MQTT topics; got '{value}')");
    }

    [Fact]
    public void GivenAConfigFileWithSyntaxWeDoNotReadInAnotherTable_WhenTheIdentityComesFromIt_ThenItLoads()
    {
        var file = Path.Combine(_dir.FullName, "config.toml");
        File.WriteAllText(file, "[manager]\nports = [1, 2]\n\n[proplet]\ntenant_id = \"t\"\nentity_id = \"e\"\napi_key = \"k\"\nchannel_id = \"c\"\n\n[proxy]\ntags = { a = 1 }\n");

        Load(new Dictionary<string, string> { ["PROPLET_CONFIG_FILE"] = file }).BaseTopic.ShouldBe("m/t/c/c");
    }

    private static PropletSettings Load(Dictionary<string, string> env) => PropletSettingsLoader.Load(name => env.GetValueOrDefault(name));
}
