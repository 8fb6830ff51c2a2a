namespace Propeller.Manager.Tests;

/// <summary>
/// A Marten listener for tests: once armed, fails the first commit that dispatches a task with <paramref name="failure"/>
/// (a lost race, PostgreSQL going away), as Marten would have failed it.
/// </summary>
internal sealed class FirstDispatchFails(Func<Exception> failure) : Marten.DocumentSessionListenerBase
{
    private int _armed;

    public bool Fired { get; private set; }

    public void Arm() => Volatile.Write(ref _armed, 1);

    public override Task BeforeSaveChangesAsync(Marten.IDocumentSession session, CancellationToken token)
    {
        ArgumentNullException.ThrowIfNull(session);
        if (session.PendingChanges.Streams().Any(s => s.Events.Any(e => e.Data is Domain.Tasks.TaskEvent.TaskDispatched))
            && Interlocked.Exchange(ref _armed, 0) == 1)
        {
            Fired = true;
            throw failure();
        }

        return Task.CompletedTask;
    }
}
