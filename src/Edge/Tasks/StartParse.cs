namespace Propeller.Edge.Tasks;

/// <summary>Outcome of <see cref="StartRequestParser.Parse"/>: a request to run, a request for another proplet (dropped
/// silently), or an error (reported as a result when <see cref="Id"/> is known, otherwise only logged). An error keeps the
/// <see cref="Attempt"/> and <see cref="Dispatch"/> the start named, so its result is of that run: one naming none applies
/// to whatever attempt the manager has current, and a stale invalid start failed a newer attempt.</summary>
public sealed record StartParse(StartRequest? Request, string? Id, string? Error, int? Attempt = null, int? Dispatch = null)
{
    public static StartParse NotForMe { get; } = new(null, null, null);

    public bool IsForOtherProplet => Request is null && Error is null;
}
