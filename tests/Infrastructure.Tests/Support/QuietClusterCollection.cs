namespace Propeller.Infrastructure.Tests.Support;

/// <summary>
/// Tests that assert what the global reader returns right now: the reader's horizon (xmin) is cluster-wide, so the
/// open transactions of tests running in parallel would hold it back. This collection runs alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class QuietClusterCollection
{
    public const string Name = "quiet cluster";
}
