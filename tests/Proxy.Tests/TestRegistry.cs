using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

/// <summary>The real registries scripts/infra.sh starts (Debian docker-registry): anonymous on PROPELLER_TEST_REGISTRY,
/// basic auth (propeller/propeller) on PROPELLER_TEST_REGISTRY_AUTH; and the shared mosquitto.</summary>
internal static class TestRegistry
{
    public const string User = "propeller";
    public const string Password = "propeller";

    public static string Anonymous => Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY") is { Length: > 0 } value ? value : "127.0.0.1:55000";

    public static string WithAuth => Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY_AUTH") is { Length: > 0 } value ? value : "127.0.0.1:55001";

    public static string Mqtt => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    /// <summary>The anonymous registry's storage (scripts/infra.sh: .infra/registry/anon), for the corruption test.</summary>
    public static string StorageDirectory => Environment.GetEnvironmentVariable("PROPELLER_TEST_REGISTRY_DIR") is { Length: > 0 } value ? value : DefaultStorage();

    /// <summary>A repository no other test (or test run) uses.</summary>
    public static string Repository(string name) => $"test/{name}-{Guid.NewGuid():N}"[..(name.Length + 17)];

    public static RegistryClient Client(HttpClient http, RegistryCredentials? credentials = null) =>
        new(http, new RegistryAuth(credentials, TimeProvider.System), _ => true);

    private static string DefaultStorage()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Propeller.sln")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Propeller.sln not found"), ".infra", "registry", "anon");
    }

    public static RegistryCredentials Credentials(string? password = Password) => new(WithAuth, User, password, null);
}
