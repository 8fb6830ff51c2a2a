using Npgsql;

namespace Propeller.Manager;

/// <summary>The manager's settings from the original's environment variables (spec propeller-manager.md §8).</summary>
internal static class ManagerSettings
{
    /// <summary>MANAGER_POSTGRES_HOST/PORT/USER/PASS/DB/SSL_MODE as an Npgsql connection string.</summary>
    public static string PostgresConnectionString()
    {
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = Get("MANAGER_POSTGRES_HOST", "localhost"),
            Port = int.TryParse(Get("MANAGER_POSTGRES_PORT", "5432"), out var port) ? port : throw new InvalidOperationException("MANAGER_POSTGRES_PORT is not a number"),
            Username = Get("MANAGER_POSTGRES_USER", "propeller"),
            Password = Get("MANAGER_POSTGRES_PASS", "propeller"),
            Database = Get("MANAGER_POSTGRES_DB", "propeller"),
            SslMode = Enum.TryParse<SslMode>(Get("MANAGER_POSTGRES_SSL_MODE", "disable"), ignoreCase: true, out var ssl) ? ssl : SslMode.Disable,
        };
        return builder.ConnectionString;
    }

    private static string Get(string name, string fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;
}
