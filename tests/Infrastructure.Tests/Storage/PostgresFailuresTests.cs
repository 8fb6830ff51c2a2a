using Npgsql;
using Propeller.Infrastructure;

namespace Propeller.Infrastructure.Tests.Storage;

/// <summary>Which PostgreSQL failures the API answers with 503 (unavailable: try later) and which it does not.</summary>
public sealed class PostgresFailuresTests
{
    [Theory]
    [InlineData("57P01")] // admin_shutdown
    [InlineData("57P02")] // crash_shutdown
    [InlineData("57P03")] // cannot_connect_now
    [InlineData("57014")] // query_canceled (statement_timeout)
    [InlineData("08006")] // connection_failure
    [InlineData("53300")] // too_many_connections
    [InlineData("53100")] // disk_full
    [InlineData("53200")] // out_of_memory
    [InlineData("26000")] // invalid_sql_statement_name: an auto-prepared statement out of step (seen in the chaos test)
    public void GivenAServerErrorOfAnUnavailableDatabase_ThenItIsUnavailable(string sqlState) =>
        PostgresFailures.IsUnavailable(new InvalidOperationException("wrapped", Error(sqlState))).ShouldBeTrue();

    [Theory]
    [InlineData("23505")] // unique_violation
    [InlineData("42P01")] // undefined_table
    [InlineData("22P05")] // untranslatable_character
    [InlineData("40001")] // serialization_failure (a race, retried as such)
    public void GivenAnErrorOfTheStatement_ThenItIsNotUnavailable(string sqlState) =>
        PostgresFailures.IsUnavailable(Error(sqlState)).ShouldBeFalse();

    /// <summary>A prepared statement the server does not have (Npgsql's auto-prepared statements out of step after a failed
    /// transaction: a DELETE answered 500 in the chaos test) is tried again: nothing was done.</summary>
    [Fact]
    public void GivenAPreparedStatementTheServerDoesNotHave_ThenItIsTransient()
    {
        PostgresFailures.IsTransient(new InvalidOperationException("wrapped", Error("26000"))).ShouldBeTrue();
        PostgresFailures.IsTransient(Error("42P01")).ShouldBeFalse();
    }

    [Fact]
    public void GivenAnErrorBelowTheSqlLevel_ThenItIsUnavailable() =>
        PostgresFailures.IsUnavailable(new NpgsqlException("Failed to connect to 127.0.0.1:5432")).ShouldBeTrue();

    [Fact]
    public void GivenAnErrorOfAnotherKind_ThenItIsNotUnavailable() =>
        PostgresFailures.IsUnavailable(new InvalidOperationException("a bug")).ShouldBeFalse();

    /// <summary>A lost race on a stream, named by Marten or as PostgreSQL reports it before (the stream's version taken);
    /// another unique violation is not one.</summary>
    [Fact]
    public void GivenALostRaceOnAStream_ThenItIsAConflict()
    {
        PostgresFailures.IsConflict(new JasperFx.Events.EventStreamUnexpectedMaxEventIdException(Guid.Empty, typeof(object), 6, 7)).ShouldBeTrue();
        PostgresFailures.IsConflict(new InvalidOperationException("wrapped", new PostgresException("duplicate key value", "ERROR", "ERROR", PostgresErrorCodes.UniqueViolation, constraintName: "pk_mt_events_stream_and_version"))).ShouldBeTrue();
        PostgresFailures.IsConflict(new PostgresException("duplicate key value", "ERROR", "ERROR", PostgresErrorCodes.UniqueViolation, constraintName: "pk_other")).ShouldBeFalse();
    }

    private static PostgresException Error(string sqlState) => new("message", "ERROR", "ERROR", sqlState);
}
