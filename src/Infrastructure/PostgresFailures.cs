using Npgsql;
using Propeller.Application.EventStore;

namespace Propeller.Infrastructure;

/// <summary>
/// What a failure on the way to PostgreSQL says about trying again, read through the errors Marten and Wolverine wrap
/// PostgreSQL's in: used by the inbound handler (retry before the broker acknowledges) and Wolverine's error policy.
/// </summary>
public static class PostgresFailures
{
    /// <summary>
    /// Whether <paramref name="ex"/> (or what it wraps) is a failure another try can cure: PostgreSQL unreachable,
    /// restarting or in a deadlock (Npgsql's transient errors and any error below the SQL level), or a timeout. A
    /// PostgreSQL error that says the statement is wrong (a constraint, a syntax error) is not: retried, it would fail
    /// the same way forever. A prepared statement the server does not have (26000) is: Npgsql's auto-prepared statements
    /// out of step with the connection after a failed transaction (npgsql/npgsql#6391; seen once in a chaos test run
    /// after PostgreSQL's connections were cut); nothing was done, and another try prepares it again.
    /// </summary>
    public static bool IsTransient(Exception ex) =>
        Chain(ex).Any(e => e is TimeoutException or NpgsqlException { IsTransient: true } or NpgsqlException and not PostgresException
            or PostgresException { SqlState: PostgresErrorCodes.InvalidSqlStatementName });

    /// <summary>
    /// Whether <paramref name="ex"/> (or what it wraps) says PostgreSQL cannot be used now, whatever was asked of it:
    /// unreachable, the connection lost or timed out, the pool exhausted (Npgsql's errors below the SQL level), shutting
    /// down or starting up (57P01–57P03), a statement cancelled by its timeout (57014), a connection error reported by the
    /// server (class 08), or out of resources: connection slots, disk, memory (class 53), or a connection whose prepared
    /// statements are out of step with the server (26000, <see cref="IsTransient"/>). The API answers it with 503: the
    /// request was fine, and may succeed later.
    /// </summary>
    public static bool IsUnavailable(Exception ex) => Chain(ex).Any(e => e is NpgsqlException and not PostgresException
        or PostgresException { SqlState: PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.QueryCanceled }
        or PostgresException { SqlState: PostgresErrorCodes.InvalidSqlStatementName }
        or PostgresException { SqlState: ['0', '8', ..] or ['5', '3', ..] });

    /// <summary>Whether <paramref name="ex"/> (or what it wraps) is a lost race on a stream: named by Marten or by us, or
    /// as PostgreSQL reports it before Marten names it (another writer took the stream version an append expected to write),
    /// or two writers starting one stream (every manager node registers a new proplet it hears of: one wins).</summary>
    public static bool IsConflict(Exception ex) => Chain(ex).Any(e => e is ConcurrencyException or JasperFx.ConcurrencyException
        or Marten.Exceptions.ExistingStreamIdCollisionException or JasperFx.Events.ExistingStreamIdCollisionException
        or PostgresException { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "pk_mt_events_stream_and_version" });

    /// <summary>
    /// The PostgreSQL error when <paramref name="ex"/> (or what it wraps) says a value cannot be stored: a <c>\u0000</c>
    /// in text or jsonb, a number beyond jsonb's numeric range, a character outside the encoding, text jsonb cannot
    /// read, a value beyond one of PostgreSQL's limits (54000: a text too long for a btree index's row, ~2.7 KB, or for
    /// jsonb). Input a client sent, not a failure of ours: the API answers it with 400 (the validators refuse the known
    /// cases first, naming the field; this is the safety net).
    /// </summary>
    public static PostgresException? BadValue(Exception ex) =>
        Chain(ex).OfType<PostgresException>().FirstOrDefault(e => e.SqlState is PostgresErrorCodes.UntranslatableCharacter
            or PostgresErrorCodes.CharacterNotInRepertoire or PostgresErrorCodes.NumericValueOutOfRange or PostgresErrorCodes.InvalidTextRepresentation
            or PostgresErrorCodes.ProgramLimitExceeded);

    private static IEnumerable<Exception> Chain(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            yield return e;
        }
    }
}
