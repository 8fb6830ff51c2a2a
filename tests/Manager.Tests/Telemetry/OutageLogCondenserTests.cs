using Microsoft.Extensions.Logging;
using Npgsql;
using Propeller.Manager.Telemetry;

namespace Propeller.Manager.Tests.Telemetry;

public sealed class OutageLogCondenserTests
{
    /// <summary>
    /// A category's entries for PostgreSQL being unusable: the first of a minute is logged, the rest are counted, and the
    /// first of the next minute says how many were left out. Other failures, and other categories, pass unchanged.
    /// </summary>
    [Fact]
    public void GivenRepeatedOutageErrors_WhenLogged_ThenOneAMinuteIsWrittenAndTheRestCounted()
    {
        var time = new ManualTime();
        var written = new LogRecorder();
        using var factory = new OutageLogCondenser(LoggerFactory.Create(b => b.AddProvider(written).SetMinimumLevel(LogLevel.Trace)), time);
        var agent = factory.CreateLogger("Wolverine.RDBMS.DurabilityAgent");
        var other = factory.CreateLogger("Propeller.Infrastructure.Mqtt.SessionRecovery");
        var unreachable = new NpgsqlException("Failed to connect to 127.0.0.1:55432", new System.Net.Sockets.SocketException(111));

        for (var i = 0; i < 20; i++)
        {
            agent.LogError(unreachable, "Error trying to poll");
            time.Advance(TimeSpan.FromSeconds(1));
        }

        other.LogWarning(unreachable, "Session recovery round failed");
        agent.LogError(new InvalidOperationException("a bug"), "Something else");
        agent.LogInformation("a line");
        written.Lines.ShouldBe(["Wolverine.RDBMS.DurabilityAgent: Error trying to poll", "Propeller.Infrastructure.Mqtt.SessionRecovery: Session recovery round failed", "Wolverine.RDBMS.DurabilityAgent: Something else", "Wolverine.RDBMS.DurabilityAgent: a line"]);

        time.Advance(TimeSpan.FromSeconds(40));
        agent.LogError(unreachable, "Error trying to poll");

        written.Lines.Skip(4).ShouldBe([
            "Wolverine.RDBMS.DurabilityAgent: 19 more entries of Wolverine.RDBMS.DurabilityAgent for PostgreSQL being unavailable were left out after the one logged at 2026-12-06T00:00:00.0000000+00:00 (one a minute is logged)",
            "Wolverine.RDBMS.DurabilityAgent: Error trying to poll"]);
    }

    /// <summary>
    /// The wall clock stepping back (NTP correcting a clock that ran ahead) while PostgreSQL stays unreachable: the next
    /// window still opens a minute later. Measured on the wall clock, the time since the window opened was negative, and
    /// every entry was dropped until the clock caught up (here an hour).
    /// </summary>
    [Fact]
    public void GivenTheWallClockSteppedBack_WhenAMinutePasses_ThenTheNextOutageErrorIsLogged()
    {
        var time = new ManualTime();
        var written = new LogRecorder();
        using var factory = new OutageLogCondenser(LoggerFactory.Create(b => b.AddProvider(written).SetMinimumLevel(LogLevel.Trace)), time);
        var agent = factory.CreateLogger("Wolverine.RDBMS.DurabilityAgent");
        var unreachable = new NpgsqlException("Failed to connect to 127.0.0.1:55432", new System.Net.Sockets.SocketException(111));

        agent.LogError(unreachable, "Error trying to poll");
        time.StepWallClock(TimeSpan.FromHours(-1));
        time.Advance(TimeSpan.FromSeconds(30));
        agent.LogError(unreachable, "Error trying to poll");
        time.Advance(TimeSpan.FromSeconds(31));
        agent.LogError(unreachable, "Error trying to poll");

        written.Lines.ShouldBe([
            "Wolverine.RDBMS.DurabilityAgent: Error trying to poll",
            "Wolverine.RDBMS.DurabilityAgent: 1 more entries of Wolverine.RDBMS.DurabilityAgent for PostgreSQL being unavailable were left out after the one logged at 2026-12-06T00:00:00.0000000+00:00 (one a minute is logged)",
            "Wolverine.RDBMS.DurabilityAgent: Error trying to poll"]);
    }

    /// <summary>A wall clock that can step back, and a monotonic one that only moves forward with <see cref="Advance"/>.</summary>
    private sealed class ManualTime : TimeProvider
    {
        private DateTimeOffset _now = new(2026, 12, 6, 0, 0, 0, TimeSpan.Zero);
        private long _ticks;

        public override DateTimeOffset GetUtcNow() => _now;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by)
        {
            _now += by;
            _ticks += by.Ticks;
        }

        public void StepWallClock(TimeSpan by) => _now += by;
    }
}
