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
    /// <summary>
    /// A command refused on purpose (a plugin's deny, a failed validation, a gate that met a change) fails its invocation:
    /// Wolverine's entry for it is a debug entry, since the caller answers it (403, 400, a gate again, 409); the same
    /// exceptions logged anywhere else keep their level.
    /// </summary>
    [Fact]
    public void GivenRefusedInvocations_WhenWolverineLogsThem_ThenTheyAreDebugEntries()
    {
        var written = new LogRecorder();
        using var factory = new RoutineConflictLogs(LoggerFactory.Create(b => b.AddProvider(written).SetMinimumLevel(LogLevel.Trace)));
        var handler = factory.CreateLogger("Wolverine.Runtime.WolverineRuntime");
        var task = new Propeller.Domain.Tasks.TaskId(Guid.NewGuid());

        handler.LogError(new Propeller.Manager.Wolverine.PluginDeniedException("not in this zone"), "Invocation of RunTaskCommand failed!");
        handler.LogError(new FluentValidation.ValidationException("name is required"), "Invocation of RunTaskCommand failed!");
        handler.LogError(new Propeller.Manager.Wolverine.StaleGateException(task), "Invocation of RunTaskCommand failed!");
        handler.LogError(new Propeller.Manager.Wolverine.GateRaceException(task, 16), "Invocation of RunTaskCommand failed!");
        handler.LogError(new Propeller.Manager.Wolverine.PluginDeniedException("not in this zone"), "Failed to process message PlaceTasks#01 from local://scheduling/");

        written.Levels.ShouldBe([LogLevel.Debug, LogLevel.Debug, LogLevel.Debug, LogLevel.Debug, LogLevel.Error]);
    }
}
