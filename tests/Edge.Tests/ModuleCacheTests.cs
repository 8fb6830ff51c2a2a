using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>Compiled modules are reused by hash, in memory and across processes on disk (issue 12).</summary>
public sealed class ModuleCacheTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("module-cache");

    public void Dispose() => _dir.Delete(true);

    [Fact]
    public void GivenTheSameBytesTwice_WhenCompiled_ThenTheSecondIsTheCachedModule()
    {
        var cache = new ModuleCache(WasmEngine.Shared);

        var first = cache.GetOrCompile("a", Modules.Addition);
        var second = cache.GetOrCompile("b", Modules.Addition);

        second.ShouldBeSameAs(first);
        cache.GetOrCompile("c", Modules.Trap).ShouldNotBeSameAs(first);
    }

    [Fact]
    public void GivenADiskCache_WhenANewCacheLoadsTheSameBytes_ThenItDeserializesTheStoredCode()
    {
        new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("a", Modules.Addition);
        var stored = _dir.GetFiles("*.cwasm").ShouldHaveSingleItem();
        var written = stored.LastWriteTimeUtc;

        var module = new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("a", Modules.Addition);

        module.Exports.OfType<FunctionExport>().Single().Name.ShouldBe("main");
        _dir.GetFiles("*.cwasm").ShouldHaveSingleItem().LastWriteTimeUtc.ShouldBe(written);
    }

    /// <summary>The directory keeps to its budget: after a write takes it over, the entries used longest ago go first
    /// (a load counts as a use), down to three quarters of the budget.</summary>
    [Fact]
    public void GivenADiskBudget_WhenMoreModulesAreCompiled_ThenTheEntriesUsedLongestAgoAreDeleted()
    {
        static byte[] Module(int n) => Propeller.Tests.Shared.Wat.ToWasm($"(module (func (export \"main\") (result i32) (i32.const {n})))");
        new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("m0", Module(0));
        var entry = _dir.GetFiles("*.cwasm").ShouldHaveSingleItem().Length;
        var budget = (entry * 4) + (entry / 2);
        for (var n = 1; n < 12; n++)
        {
            new ModuleCache(WasmEngine.Shared, _dir.FullName, budget).GetOrCompile($"m{n}", Module(n));
            new ModuleCache(WasmEngine.Shared, _dir.FullName, budget).GetOrCompile("m0", Module(0)); // loaded: used again
        }

        var kept = _dir.GetFiles("*.cwasm");
        kept.Sum(f => f.Length).ShouldBeLessThanOrEqualTo(budget);
        kept.Length.ShouldBeGreaterThanOrEqualTo(2);
        var first = new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("m0", Module(0));
        first.ShouldNotBeNull();
        _dir.GetFiles("*.cwasm").Length.ShouldBe(kept.Length); // m0 was still there: loaded, not written again
    }

    [Fact]
    public void GivenADamagedCacheFile_WhenLoaded_ThenTheModuleIsCompiledAgainAndTheFileReplaced()
    {
        new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("a", Modules.Addition);
        var stored = _dir.GetFiles("*.cwasm").Single();
        File.WriteAllBytes(stored.FullName, [1, 2, 3]);

        var module = new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("a", Modules.Addition);

        module.Exports.OfType<FunctionExport>().Single().Name.ShouldBe("main");
        new FileInfo(stored.FullName).Length.ShouldBeGreaterThan(3);
    }

    [Fact]
    public void GivenAnEngineWithOtherSettings_WhenItUsesTheSameDirectory_ThenItKeepsItsOwnEntry()
    {
        using var plain = new WasmEngine(fuel: false, epochs: false);
        new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("a", Modules.Addition);

        new ModuleCache(plain, _dir.FullName).GetOrCompile("a", Modules.Addition);

        _dir.GetFiles("*.cwasm").Length.ShouldBe(2);
    }
}
