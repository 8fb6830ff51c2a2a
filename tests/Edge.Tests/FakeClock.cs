namespace Propeller.Edge.Tests;

/// <summary>
/// A clock whose time, timestamps and timers move only when told (<see cref="Advance"/>): the timers due by then fire on
/// the caller's thread. <see cref="TimersCreatedAsync"/> lets a test wait until the code under test has set its next
/// timer, i.e. has done what it does when one fires.
/// </summary>
internal sealed class FakeClock : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<Timer> _timers = [];
    private readonly List<(int Count, TaskCompletionSource Reached)> _waiting = [];
    private DateTimeOffset _now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private long _ticks;
    private int _created;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override DateTimeOffset GetUtcNow()
    {
        lock (_lock)
        {
            return _now;
        }
    }

    public override long GetTimestamp()
    {
        lock (_lock)
        {
            return _ticks;
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new Timer(this, callback, state);
        List<TaskCompletionSource> reached;
        lock (_lock)
        {
            timer.Schedule(dueTime, period);
            _timers.Add(timer);
            _created++;
            reached = [.. _waiting.Where(w => w.Count <= _created).Select(w => w.Reached)];
            _waiting.RemoveAll(w => w.Count <= _created);
        }

        foreach (var done in reached)
        {
            done.TrySetResult();
        }

        return timer;
    }

    /// <summary>Completes once <paramref name="count"/> timers have been created in all.</summary>
    public Task TimersCreatedAsync(int count)
    {
        lock (_lock)
        {
            if (_created >= count)
            {
                return Task.CompletedTask;
            }

            var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiting.Add((count, reached));
            return reached.Task;
        }
    }

    /// <summary>Moves the clock on by <paramref name="by"/> and fires the timers due by then, in order.</summary>
    public void Advance(TimeSpan by)
    {
        long until;
        lock (_lock)
        {
            _now += by;
            _ticks += by.Ticks;
            until = _ticks;
        }

        while (true)
        {
            Timer? due;
            lock (_lock)
            {
                due = _timers.Where(t => t.Due <= until).MinBy(t => t.Due);
                if (due is null)
                {
                    return;
                }

                due.Fired();
            }

            due.Invoke();
        }
    }

    private sealed class Timer(FakeClock clock, TimerCallback callback, object? state) : ITimer
    {
        private long _period = -1;

        public long Due { get; private set; } = long.MaxValue;

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (clock._lock)
            {
                Schedule(dueTime, period);
            }

            return true;
        }

        public void Dispose()
        {
            lock (clock._lock)
            {
                clock._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }

        /// <summary>Sets the next firing; called under the clock's lock.</summary>
        public void Schedule(TimeSpan dueTime, TimeSpan period)
        {
            Due = dueTime == Timeout.InfiniteTimeSpan ? long.MaxValue : clock._ticks + dueTime.Ticks;
            _period = period == Timeout.InfiniteTimeSpan || period == TimeSpan.Zero ? -1 : period.Ticks;
        }

        /// <summary>It fires now: the next firing a period on, or none; called under the clock's lock.</summary>
        public void Fired() => Due = _period > 0 ? Due + _period : long.MaxValue;

        public void Invoke() => callback(state);
    }
}
