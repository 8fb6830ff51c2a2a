using Npgsql;
using Propeller.Tests.Shared;

[assembly: AssemblyFixture(typeof(TestPostgresFixture))]

namespace Propeller.Plugins.Tests.Support;

/// <summary>
/// The shared test PostgreSQL (tests/Shared/TestPostgres.cs: a container where Docker answers, else scripts/infra.sh's)
/// with one schema per test class, dropped before each test (not after, so a failure leaves its evidence).
/// </summary>
internal static class TestDatabase
{
    public static string ConnectionString => TestPostgres.ConnectionString;

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
