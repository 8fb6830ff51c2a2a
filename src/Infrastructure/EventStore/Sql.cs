namespace Propeller.Infrastructure.EventStore;

/// <summary>Quoting helpers for identifiers that come from configuration (the schema name).</summary>
internal static class Sql
{
    public static string Identifier(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                throw new ArgumentException($"'{name}' is not a valid schema name: use letters, digits and '_' only", nameof(name));
            }
        }

        return "\"" + name + "\"";
    }

    /// <summary>SQLSTATE raised by append_events when the expected version does not match.</summary>
    public const string ConcurrencyState = "PV001";

    /// <summary>SQLSTATE raised by append_events on an archived stream.</summary>
    public const string ArchivedState = "PV002";

    /// <summary>
    /// SQLSTATE raised by append_events when the transaction's id is older than the stream's last writer, which would
    /// make the global (xid, seq) order disagree with the stream's version order. The caller retries in a new transaction.
    /// </summary>
    public const string OrderingState = "PV003";
}
