using Propeller.Proxy.Configuration;
using Propeller.Tests.Shared;

namespace Propeller.Proxy.Tests;

public sealed class ProxySettingsLoaderTests
{
    private static readonly Dictionary<string, string> Identity = new()
    {
        ["PROXY_TENANT_ID"] = "t",
        ["PROXY_CHANNEL_ID"] = "c",
        ["PROXY_ENTITY_ID"] = "proxy-1",
        ["PROXY_API_KEY"] = "k",
    };

    /// <summary>Every PROXY_* variable the loader reads, given values drawn at random (SettingsFuzz), seeded by
    /// PROPELLER_FUZZ_SEED: the settings load or are refused with a <see cref="ProxyConfigurationException"/>.</summary>
    [Fact]
    public void EveryProxyVariable_WithValuesDrawnAtRandom_LoadsOrIsRefusedWithAProxyConfigurationException()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();
        var (variables, loaded) = SettingsFuzz.Run(env => ProxySettingsLoader.Load(env), Identity, e => e is ProxyConfigurationException, seed);

        variables.ShouldBeGreaterThan(10);
        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}: {variables} variables, {loaded} of 3000 draws loaded");
    }

    /// <summary>
    /// The MQTT TLS files are read at load: a client key that is not the certificate's, or a file that is no PEM, is a
    /// configuration error naming the variable (exit 78). Checked only for existing, they stopped the proxy once it had
    /// started, with exit code 0.
    /// </summary>
    [Fact]
    public void GivenTlsFilesThatExistButDoNotLoad_WhenLoaded_ThenEachIsAConfigurationErrorNamingItsVariable()
    {
        using var tls = new TlsFiles();

        Should.Throw<ProxyConfigurationException>(() => ProxySettingsLoader.Load(Env(new Dictionary<string, string>(Identity)
        {
            ["PROXY_MQTT_TLS_CLIENT_CERT"] = tls.Certificate,
            ["PROXY_MQTT_TLS_CLIENT_KEY"] = tls.OtherKey,
        }))).Message.ShouldStartWith($"PROXY_MQTT_TLS_CLIENT_CERT '{tls.Certificate}' and PROXY_MQTT_TLS_CLIENT_KEY '{tls.OtherKey}' cannot be read");
        Should.Throw<ProxyConfigurationException>(() => ProxySettingsLoader.Load(Env(new Dictionary<string, string>(Identity)
        {
            ["PROXY_MQTT_TLS_CLIENT_CERT"] = tls.Garbage,
            ["PROXY_MQTT_TLS_CLIENT_KEY"] = tls.Key,
        }))).Message.ShouldStartWith("PROXY_MQTT_TLS_CLIENT_CERT");
        Should.Throw<ProxyConfigurationException>(() => ProxySettingsLoader.Load(Env(new Dictionary<string, string>(Identity) { ["PROXY_MQTT_TLS_CA_CERT"] = tls.Garbage })))
            .Message.ShouldStartWith($"PROXY_MQTT_TLS_CA_CERT: '{tls.Garbage}' cannot be read");

        var settings = ProxySettingsLoader.Load(Env(new Dictionary<string, string>(Identity)
        {
            ["PROXY_MQTT_TLS_CA_CERT"] = tls.Certificate,
            ["PROXY_MQTT_TLS_CLIENT_CERT"] = tls.Certificate,
            ["PROXY_MQTT_TLS_CLIENT_KEY"] = tls.Key,
        }));
        (settings.TlsClientCert, settings.TlsClientKey).ShouldBe((tls.Certificate, tls.Key));
    }

    [Fact]
    public void GivenOnlyTheIdentity_WhenLoaded_ThenTheOriginalsDefaultsApply()
    {
        var settings = ProxySettingsLoader.Load(Env(Identity));

        settings.BaseTopic.ShouldBe("m/t/c/c");
        settings.MqttAddress.ShouldBe("tcp://localhost:1883");
        settings.ChunkSize.ShouldBe(128_000); // not the original's 512000: measured (docs/performance.md)
        settings.HttpPort.ShouldBe(9191);
        settings.MqttTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        settings.Qos.ShouldBe(MQTTnet.Protocol.MqttQualityOfServiceLevel.ExactlyOnce);
        settings.Authenticate.ShouldBeFalse();
        settings.MaxArtifactBytes.ShouldBe(100L << 20);
    }

    [Fact]
    public void GivenNoIdentityInTheEnvironment_WhenTheConfigFileHasAProxySection_ThenItIsUsedWithTheDocsNames()
    {
        var file = Path.GetTempFileName();
        File.WriteAllText(file, "[proplet]\nclient_id = \"p\"\n[proxy]\ndomain_id = \"dom\"\nclient_id = \"px\"\nclient_key = \"key\"\nchannel_id = \"ch\"\n");
        try
        {
            var settings = ProxySettingsLoader.Load(Env(new() { ["PROXY_CONFIG_FILE"] = file }));

            (settings.TenantId, settings.EntityId, settings.ApiKey, settings.ChannelId).ShouldBe(("dom", "px", "key", "ch"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("PROXY_CHUNK_SIZE", "0", "PROXY_CHUNK_SIZE '0' must be an integer from 1")]
    [InlineData("PROXY_MQTT_QOS", "3", "PROXY_MQTT_QOS '3' must be an integer from 0 to 2")]
    [InlineData("PROXY_MQTT_TIMEOUT", "soon", "PROXY_MQTT_TIMEOUT 'soon' must be a positive duration")]
    [InlineData("PROXY_MQTT_TIMEOUT", "1200h", "PROXY_MQTT_TIMEOUT '1200h' must be a positive duration such as 30s or 1m30s, at most 1193h")]
    [InlineData("PROXY_REGISTRY_TIMEOUT", "1200h", "PROXY_REGISTRY_TIMEOUT '1200h' must be a positive duration such as 30s or 1m30s, at most 596h")]
    [InlineData("PROXY_REGISTRY_TIMEOUT", "600h", "PROXY_REGISTRY_TIMEOUT '600h' must be a positive duration such as 30s or 1m30s, at most 596h")] // HttpClient.Timeout's limit: it threw unhandled at startup
    [InlineData("PROXY_AUTHENTICATE", "maybe", "PROXY_AUTHENTICATE 'maybe' must be true or false")]
    [InlineData("PROXY_AUTHENTICATE", "true", "PROXY_AUTHENTICATE is true but PROXY_REGISTRY_URL is empty")]
    [InlineData("PROXY_MAX_ARTIFACT_BYTES", "-1", "PROXY_MAX_ARTIFACT_BYTES '-1' must be an integer from 1")]
    [InlineData("PROXY_MAX_ARTIFACT_BYTES", "2147483592", "PROXY_MAX_ARTIFACT_BYTES '2147483592' is over 2147483591, the largest artefact the proxy can hold (one array)")]
    [InlineData("PROXY_MQTT_ADDRESS", "tcp://", "PROXY_MQTT_ADDRESS 'tcp://' is not an MQTT address")]
    [InlineData("PROXY_LOG_LEVEL", "loud", "PROXY_LOG_LEVEL 'loud' is not one of")]
    [InlineData("PROXY_CHUNK_SIZE", "1000", "PROXY_CHUNK_SIZE '1000' splits an artefact of PROXY_MAX_ARTIFACT_BYTES (104857600) into 104858 chunks, over the 100000 a proplet accepts; raise the chunk size to at least 1049")]
    public void GivenABadValue_WhenLoaded_ThenTheErrorNamesTheVariable(string name, string value, string message)
    {
        var env = new Dictionary<string, string>(Identity) { [name] = value };

        Should.Throw<ProxyConfigurationException>(() => ProxySettingsLoader.Load(Env(env))).Message.ShouldStartWith(message);
    }

    /// <summary>At most 100,000 chunks per artefact, the proplet's limit: the smallest chunk size that keeps the default
    /// limit within it loads.</summary>
    [Fact]
    public void GivenAChunkSizeThatKeepsTheLargestArtefactWithinTheProplestChunkLimit_WhenLoaded_ThenItIsTaken()
    {
        var env = new Dictionary<string, string>(Identity) { ["PROXY_CHUNK_SIZE"] = "1049", ["PROXY_MAX_ARTIFACT_BYTES"] = "104857600" };

        ProxySettingsLoader.Load(Env(env)).ChunkSize.ShouldBe(1049);
    }

    [Theory]
    [InlineData("https://ghcr.io:443", "ghcr.io")]
    [InlineData("http://reg.local:80/v2/", "reg.local")]
    [InlineData("https://reg.local:8443", "reg.local:8443")]
    [InlineData("http://reg.local:443", "reg.local:443")]
    [InlineData("GHCR.io", "ghcr.io")]
    public void GivenARegistryUrl_WhenItsHostIsTaken_ThenTheSchemesOwnPortIsDropped(string url, string host) =>
        ProxySettingsLoader.HostOf(url).ShouldBe(host);

    [Fact]
    public void GivenTheLargestArrayAsTheArtefactLimit_WhenLoaded_ThenItIsTaken()
    {
        var env = new Dictionary<string, string>(Identity) { ["PROXY_MAX_ARTIFACT_BYTES"] = Array.MaxLength.ToString(System.Globalization.CultureInfo.InvariantCulture) };

        ProxySettingsLoader.Load(Env(env)).MaxArtifactBytes.ShouldBe(Array.MaxLength);
    }

    [Fact]
    public void GivenNoIdentityAndNoConfigFile_WhenLoaded_ThenTheErrorNamesTheFileAndTheVariables()
    {
        var error = Should.Throw<ProxyConfigurationException>(() => ProxySettingsLoader.Load(Env(new() { ["PROXY_CONFIG_FILE"] = "/nonexistent/config.toml" }))).Message;

        error.ShouldContain("'/nonexistent/config.toml' not accessible");
        error.ShouldContain("PROXY_TENANT_ID");
    }

    [Fact]
    public void GivenAuthenticationWithAUrl_WhenLoaded_ThenTheCredentialsAreForItsHost()
    {
        var env = new Dictionary<string, string>(Identity)
        {
            ["PROXY_AUTHENTICATE"] = "true",
            ["PROXY_REGISTRY_URL"] = "https://Registry.Example:5000/",
            ["PROXY_REGISTRY_USERNAME"] = "u",
            ["PROXY_REGISTRY_PASSWORD"] = "p",
        };

        ProxySettingsLoader.Load(Env(env)).RegistryHost.ShouldBe("registry.example:5000");
    }

    [Theory]
    [InlineData("PROXY_TENANT_ID", "+")]
    [InlineData("PROXY_CHANNEL_ID", "#")]
    [InlineData("PROXY_CHANNEL_ID", "a/b")]
    public void GivenATopicWildcardOrSlashInTheTenantOrChannel_WhenLoaded_ThenItIsRefused(string variable, string value)
    {
        Should.Throw<ProxyConfigurationException>(() => ProxySettingsLoader.Load(Env(new Dictionary<string, string>(Identity) { [variable] = value })))
            .Message.ShouldBe($"{variable} must not contain '/', '+' or '#' (it is part of the MQTT topics; got '{value}')");
    }

    [Fact]
    public void GivenAConfigFileWithSyntaxWeDoNotReadInAnotherTable_WhenTheIdentityComesFromIt_ThenItLoads()
    {
        var dir = Directory.CreateTempSubdirectory("proxy-config-");
        try
        {
            var file = Path.Combine(dir.FullName, "config.toml");
            File.WriteAllText(file, "[proplet]\nports = [1, 2]\n\n[proxy]\ntenant_id = \"t2\"\nentity_id = \"e\"\napi_key = \"k\"\nchannel_id = \"c2\"\n");

            ProxySettingsLoader.Load(Env(new Dictionary<string, string> { ["PROXY_CONFIG_FILE"] = file })).BaseTopic.ShouldBe("m/t2/c/c2");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>Go's strconv.ParseBool forms the original proxy reads its booleans with (<c>t</c>, <c>T</c>, <c>f</c>,
    /// <c>F</c>) are read as it reads them; they were refused as not true or false.</summary>
    [Theory]
    [InlineData("t", true)]
    [InlineData("T", true)]
    [InlineData("f", false)]
    [InlineData("F", false)]
    public void GivenGosShortBooleans_WhenLoaded_ThenTheyAreReadAsGoReadsThem(string value, bool expected) =>
        ProxySettingsLoader.Load(Env(new Dictionary<string, string>(Identity) { ["PROXY_MQTT_TLS_INSECURE_SKIP_VERIFY"] = value })).TlsInsecureSkipVerify.ShouldBe(expected);

    [Theory]
    [InlineData(null, "registry.example:5000", false)]
    [InlineData(null, "localhost:5000", true)]
    [InlineData(null, "127.0.0.2:5000", true)]
    [InlineData(null, "[::1]:5000", true)]
    [InlineData("false", "localhost", true)]
    [InlineData("yes", "registry.example:5000", true)]
    [InlineData("ON", "registry.example", true)]
    [InlineData("1", "registry.example", true)]
    [InlineData("no", "registry.example", false)]
    [InlineData("a.example:5000, Registry.Example:5000", "registry.example:5000", true)]
    [InlineData("a.example:5000,registry.example:5000", "registry.example", false)]
    public void GivenPlainHttp_WhenARegistryHostIsChecked_ThenLoopbackAlwaysAndOthersAsTheValueSays(string? value, string host, bool plain)
    {
        var env = new Dictionary<string, string>(Identity);
        if (value is not null)
        {
            env["PROXY_PLAIN_HTTP"] = value;
        }

        ProxySettingsLoader.Load(Env(env)).PlainHttp.Allows(host).ShouldBe(plain);
        PlainHttpPolicy.Parse(value).Allows(host).ShouldBe(plain); // what `propeller-proxy push` reads
    }

    private static Func<string, string?> Env(Dictionary<string, string> values) => name => values.GetValueOrDefault(name);
}
