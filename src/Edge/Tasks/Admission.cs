namespace Propeller.Edge.Tasks;

/// <summary>
/// A start not yet admitted: with the proplet plugins, or waiting for a stopped run of its id to unwind. A stop meanwhile
/// cancels it (<see cref="Cancellation"/>); a start of a later dispatch of its attempt meanwhile (the task dispatched back
/// here: the proplet had been taken for gone) makes it that dispatch (<see cref="Adopt"/>), as it does a running task.
/// </summary>
internal sealed class Admission(StartRequest request, CancellationToken lifetime) : IDisposable
{
    private readonly AdoptedDispatch _dispatch = new(request.Message.Dispatch);

    public CancellationTokenSource Cancellation { get; } = CancellationTokenSource.CreateLinkedTokenSource(lifetime);

    /// <summary>The attempt its start named (our manager's <c>attempt</c>).</summary>
    public int? Attempt { get; } = request.Attempt;

    /// <summary>Which dispatch of its attempt it is: its start's, or a later one's that found it here.</summary>
    public int? Dispatch => _dispatch.Value;

    /// <summary>Its attempt and dispatch, when its start named both.</summary>
    public Run? Run => Attempt is { } attempt && Dispatch is { } dispatch ? new Run(attempt, dispatch) : null;

    /// <summary>A start of a later dispatch of its attempt arrived: it is admitted as that one.</summary>
    public void Adopt(int dispatch) => _dispatch.Adopt(dispatch);

    /// <summary><paramref name="request"/> as the dispatch this admission is now (read once it has left the admissions, when
    /// no start can raise it any more).</summary>
    public StartRequest Admitted(StartRequest request) => Dispatch == request.Message.Dispatch
        ? request
        : request with { Message = request.Message with { Dispatch = Dispatch } };

    public void Dispose() => Cancellation.Dispose();
}

/// <summary>Which dispatch of its attempt a run (or a start being admitted) is: its start's, raised by a start of a later
/// dispatch that finds it (never lowered).</summary>
internal sealed class AdoptedDispatch(int? dispatch)
{
    private readonly Lock _lock = new();
    private int? _value = dispatch;

    public int? Value
    {
        get
        {
            lock (_lock)
            {
                return _value;
            }
        }
    }

    public void Adopt(int dispatch)
    {
        lock (_lock)
        {
            if (_value is not { } current || dispatch > current)
            {
                _value = dispatch;
            }
        }
    }
}
