using Npgsql;

namespace Propeller.Plugins.Tests.Support;

/// <summary>
/// The real PostgreSQL of scripts/test.sh (PROPELLER_TEST_DB, default below) with one schema per test class, dropped
/// before each test (not after, so a failure leaves its evidence). No fallback: unreachable = failure.
/// </summary>
internal static class TestDatabase
{
    public const string DefaultConnectionString = "Host=127.0.0.1;Port=55432;Username=propeller;Password=propeller;Database=propeller_test";

    public static string ConnectionString => Environment.GetEnvironmentVariable("PROPELLER_TEST_DB") is { Length: > 0 } value ? value : DefaultConnectionString;

    public static async Task ResetAsync(string schema)
    {
        await using var dataSource = NpgsqlDataSource.Create(ConnectionString);
        await using var drop = dataSource.CreateCommand($"drop schema if exists \"{schema}\" cascade");
        await drop.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    public static async Task<T?> ScalarAsync<T>(string sql, params object[] values)
    {
        await using var dataSource = NpgsqlDataSource.Create(ConnectionString);
        await using var command = dataSource.CreateCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        var result = await command.ExecuteScalarAsync(TestContext.Current.CancellationToken);
        return result is DBNull or null ? default : (T)result;
    }
}
