using Propeller.Application.Caching;

namespace Propeller.Application.Tests.Caching;

public sealed class VersionedCacheTests
{
    [Fact]
    public void GivenAnEmptyCache_ThenAKeyIsNotFound()
    {
        var cache = new VersionedCache<string, string>(4);

        cache.TryGet("a", out var value, out var version).ShouldBeFalse();
        (value, version).ShouldBe((null!, 0L));
        cache.Count.ShouldBe(0);
    }

    [Fact]
    public void GivenAnEntry_WhenANewerVersionIsSet_ThenItReplacesIt_AndAnOlderOneDoesNot()
    {
        var cache = new VersionedCache<string, string>(4);
        cache.Set("a", "five", 5);

        cache.Set("a", "three", 3);
        cache.TryGet("a", out var value, out var version).ShouldBeTrue();
        (value, version).ShouldBe(("five", 5L));

        cache.Set("a", "seven", 7);
        cache.TryGet("a", out value, out version).ShouldBeTrue();
        (value, version).ShouldBe(("seven", 7L));
        cache.Count.ShouldBe(1);
    }

    [Fact]
    public void GivenAnEntry_WhenTheSameVersionIsSetAgain_ThenTheLaterValueIsKept()
    {
        var cache = new VersionedCache<string, string>(4);
        cache.Set("a", "first", 2);

        cache.Set("a", "second", 2);

        cache.TryGet("a", out var value, out _).ShouldBeTrue();
        value.ShouldBe("second");
    }

    [Fact]
    public void GivenManyWritersOfOneKey_WhenTheyRace_ThenTheNewestVersionStays()
    {
        var cache = new VersionedCache<string, long>(4);

        Parallel.For(1, 20_001, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = TestContext.Current.CancellationToken }, v => cache.Set("a", v, v));

        cache.TryGet("a", out var value, out var version).ShouldBeTrue();
        (value, version).ShouldBe((20_000L, 20_000L));
        cache.Count.ShouldBe(1);
    }

    [Fact]
    public void GivenEntries_WhenOneIsRemoved_ThenItIsGoneAndCountedOut_AndRemovingItAgainChangesNothing()
    {
        var cache = new VersionedCache<string, string>(4);
        cache.Set("a", "x", 1);
        cache.Set("b", "y", 1);

        cache.Remove("a");
        cache.Remove("a");
        cache.Remove("never");

        cache.TryGet("a", out _, out _).ShouldBeFalse();
        cache.TryGet("b", out _, out _).ShouldBeTrue();
        cache.Count.ShouldBe(1);
    }

    [Fact]
    public void GivenAFullCache_WhenANewKeyIsSet_ThenItStartsOver_AndNeverHoldsMoreThanItsCapacity()
    {
        var cache = new VersionedCache<string, string>(3);
        foreach (var key in new[] { "a", "b", "c" })
        {
            cache.Set(key, key, 1);
        }

        cache.Count.ShouldBe(3);

        cache.Set("d", "d", 1);

        cache.Count.ShouldBe(1);
        cache.TryGet("d", out _, out _).ShouldBeTrue();
        cache.TryGet("a", out _, out _).ShouldBeFalse();
        for (var i = 0; i < 100; i++)
        {
            cache.Set($"k{i}", "v", 1);
            cache.Count.ShouldBeLessThanOrEqualTo(cache.Capacity);
        }
    }

    /// <summary>
    /// The start-over forgets versions with the entries: an older version set after it takes the key (as the class
    /// comment says). AggregateCache's reader tolerates that: its entries may be stale anyway (another node's commits).
    /// </summary>
    [Fact]
    public void GivenAFullCache_WhenItStartsOver_ThenAnOlderVersionOfAForgottenKeyIsTaken()
    {
        var cache = new VersionedCache<string, string>(2);
        cache.Set("a", "newer", 5);
        cache.Set("b", "b", 1);
        cache.Set("c", "c", 1); // starts over

        cache.Set("a", "older", 3);

        cache.TryGet("a", out var value, out var version).ShouldBeTrue();
        (value, version).ShouldBe(("older", 3L));
    }

    [Fact]
    public void GivenAComparer_ThenKeysAreMatchedByIt()
    {
        var cache = new VersionedCache<string, string>(4, StringComparer.OrdinalIgnoreCase);
        cache.Set("Task", "x", 2);

        cache.Set("task", "older", 1);

        cache.TryGet("TASK", out var value, out var version).ShouldBeTrue();
        (value, version).ShouldBe(("x", 2L));
        cache.Count.ShouldBe(1);
    }

    [Fact]
    public void GivenAnEntry_WhenTheCacheIsCleared_ThenNothingIsFound()
    {
        var cache = new VersionedCache<string, string>(4);
        cache.Set("a", "x", 1);

        cache.Clear();

        cache.TryGet("a", out _, out _).ShouldBeFalse();
        cache.Count.ShouldBe(0);
    }

    [Fact]
    public void ACapacityBelowOne_IsRefused() =>
        Should.Throw<ArgumentOutOfRangeException>(() => new VersionedCache<string, string>(0));
}
