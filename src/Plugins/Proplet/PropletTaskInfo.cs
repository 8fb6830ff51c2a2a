namespace Propeller.Plugins.Proplet;

/// <summary>The task as proplet plugins see it (propeller-edge.md §5 <c>task-info</c>).</summary>
public sealed record PropletTaskInfo
{
    public required string Id { get; init; }

    public required string Name { get; init; }

    public string ImageUrl { get; init; } = "";

    public IReadOnlyList<string> CliArgs { get; init; } = [];

    public IReadOnlyDictionary<string, string> Env { get; init; } = new Dictionary<string, string>();

    public bool Daemon { get; init; }

    public bool Encrypted { get; init; }
}
