using JasperFx.Events;
using Microsoft.Extensions.Logging;
using Propeller.Manager.Telemetry;

namespace Propeller.Manager.Tests.Telemetry;

public sealed class RoutineConflictLogsTests
{
    /// <summary>
    /// A lost race logged by Marten's command logging, or as one failed try of a handler, is written at debug level; the same
    /// exception elsewhere, and any other failure, keep their level.
    /// </summary>
    [Fact]
    public void GivenLostRaces_WhenMartenOrAnInvocationLogsThem_ThenTheyAreDebugEntries()
    {
        var written = new LogRecorder();
        using var factory = new RoutineConflictLogs(LoggerFactory.Create(b => b.AddProvider(written).SetMinimumLevel(LogLevel.Trace)));
        var marten = factory.CreateLogger(RoutineConflictLogs.MartenCommands);
        var handler = factory.CreateLogger("Propeller.Manager.Wolverine.RunTaskCommands");
        var race = new EventStreamUnexpectedMaxEventIdException(Guid.Empty, typeof(object), 6, 7);

        marten.LogError(race, "Marten encountered an exception executing select mt_quick_append_events(...)");
        marten.LogError(
            new Npgsql.PostgresException("duplicate key value", "ERROR", "ERROR", Npgsql.PostgresErrorCodes.UniqueViolation, constraintName: "pk_mt_events_stream_and_version"),
            "Marten encountered an exception executing insert into mt_doc_taskstate ...");
        handler.LogError(race, "Invocation of RunTaskCommands failed!");
        handler.LogError(race, "Failed to process message RedispatchTasksOf#08df from local://scheduling/");
        handler.LogError(race, "Envelope RedispatchTasksOf#08df was moved to the error queue");
        marten.LogError(new InvalidOperationException("a bug"), "Marten encountered an exception executing select 1");
        handler.LogError(new InvalidOperationException("a bug"), "Invocation of RunTaskCommands failed!");

        marten.LogError(new Npgsql.PostgresException("duplicate key value", "ERROR", "ERROR", Npgsql.PostgresErrorCodes.UniqueViolation, constraintName: "pk_other"), "Marten encountered an exception executing insert");

        written.Levels.ShouldBe([LogLevel.Debug, LogLevel.Debug, LogLevel.Debug, LogLevel.Debug, LogLevel.Error, LogLevel.Error, LogLevel.Error, LogLevel.Error]);
    }
}
