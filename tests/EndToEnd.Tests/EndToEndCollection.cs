namespace Propeller.EndToEnd.Tests;

/// <summary>The end-to-end tests run one at a time, sharing one <see cref="SharedCluster"/>.</summary>
[CollectionDefinition("e2e", DisableParallelization = true)]
public sealed class EndToEndCollection : ICollectionFixture<SharedCluster>;
