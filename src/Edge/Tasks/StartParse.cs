namespace Propeller.Edge.Tasks;

/// <summary>Outcome of <see cref="StartRequestParser.Parse"/>: a request to run, a request for another proplet (dropped
/// silently), or an error (reported as a result when <see cref="Id"/> is known, otherwise only logged).</summary>
public sealed record StartParse(StartRequest? Request, string? Id, string? Error)
{
    public static StartParse NotForMe { get; } = new(null, null, null);

    public bool IsForOtherProplet => Request is null && Error is null;
}
