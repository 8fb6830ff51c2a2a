namespace Propeller.Infrastructure.Projections;

/// <summary>The projections a host registered, each with its lifecycle. Registration is explicit (no scanning).</summary>
public sealed class ProjectionCatalog
{
    private readonly List<IProjection> _inline = [];
    private readonly List<IProjection> _async = [];

    public IReadOnlyList<IProjection> Inline => _inline;

    public IReadOnlyList<IProjection> Async => _async;

    public ProjectionCatalog Add(IProjection projection, ProjectionLifecycle lifecycle)
    {
        ArgumentNullException.ThrowIfNull(projection);
        if (_inline.Concat(_async).Any(p => p.Name == projection.Name))
        {
            throw new InvalidOperationException($"a projection named '{projection.Name}' is already registered");
        }

        (lifecycle == ProjectionLifecycle.Inline ? _inline : _async).Add(projection);
        return this;
    }
}
