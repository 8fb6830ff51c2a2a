using System.Security.Cryptography;
using Propeller.Tests.Shared;
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

    /// <summary>
    /// Memory keeps to its budget of binaries: past it, the entries used longest ago are dropped down to three quarters
    /// (before, only a count of 256 bounded it, and the entries dropped were arbitrary). Four modules of about 10 KB on
    /// a budget of 35 KB, the first used again before the fourth: the fourth drops the second and third, and keeps the
    /// first and itself.
    /// </summary>
    [Fact]
    public void GivenAMemoryBudget_WhenAModuleTakesTheCacheOverIt_ThenTheModulesUsedLongestAgoAreDropped()
    {
        var modules = Enumerable.Range(1, 4).Select(i => Wat.ToWasm($$"""
            (module (memory 1) (data (i32.const 0) "{{new string('x', 10_000)}}") (func (export "main") (result i32) i32.const {{i}}))
            """)).ToArray();
        var cache = new ModuleCache(WasmEngine.Shared, maxMemoryBytes: 35_000);
        var compiled = modules.Take(3).Select(m => cache.GetOrCompile("m", m)).ToArray();
        cache.GetOrCompile("m", modules[0]).ShouldBeSameAs(compiled[0]);

        var fourth = cache.GetOrCompile("m", modules[3]);

        cache.InMemory.Modules.ShouldBe(2);
        cache.InMemory.ModuleBytes.ShouldBe(modules[0].Length + modules[3].Length);
        cache.GetOrCompile("m", modules[0]).ShouldBeSameAs(compiled[0]);
        cache.GetOrCompile("m", modules[3]).ShouldBeSameAs(fourth);
        cache.GetOrCompile("m", modules[1]).ShouldNotBeSameAs(compiled[1]);
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
    /// (a load counts as a use), down to three quarters of the budget, and no further. Five entries of about one size
    /// on a budget of four and a half: the fifth write deletes the two used longest ago and keeps three (the prune once
    /// read an entry's size after deleting it, never counted it off, and deleted every entry).</summary>
    [Fact]
    public void GivenADiskBudget_WhenAWriteTakesTheDirectoryOverIt_ThenOnlyTheEntriesUsedLongestAgoAreDeleted()
    {
        static byte[] Module(int n) => Propeller.Tests.Shared.Wat.ToWasm($"(module (func (export \"main\") (result i32) (i32.const {n})))");
        new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("m0", Module(0));
        var first = _dir.GetFiles("*.cwasm").ShouldHaveSingleItem();
        var entry = first.Length;
        var configuration = first.Name[64..]; // after the hash: the engine's configuration and the extension
        string EntryOf(int n) => Convert.ToHexStringLower(SHA256.HashData(Module(n))) + configuration;
        var budget = (entry * 4) + (entry / 2);
        var hourAgo = DateTime.UtcNow.AddHours(-1);
        for (var n = 1; n < 4; n++)
        {
            new ModuleCache(WasmEngine.Shared, _dir.FullName, budget).GetOrCompile($"m{n}", Module(n));
            File.SetLastAccessTimeUtc(Path.Combine(_dir.FullName, EntryOf(n)), hourAgo.AddMinutes(n)); // used in the order written
        }

        File.SetLastAccessTimeUtc(Path.Combine(_dir.FullName, EntryOf(0)), hourAgo);
        new ModuleCache(WasmEngine.Shared, _dir.FullName, budget).GetOrCompile("m0", Module(0)); // loaded: used now
        _dir.GetFiles("*.cwasm").Length.ShouldBe(4); // under the budget: nothing deleted yet

        new ModuleCache(WasmEngine.Shared, _dir.FullName, budget).GetOrCompile("m4", Module(4));

        _dir.GetFiles("*.cwasm").Select(f => f.Name).Order(StringComparer.Ordinal)
            .ShouldBe(new[] { EntryOf(0), EntryOf(3), EntryOf(4) }.Order(StringComparer.Ordinal));
    }

    /// <summary>A write that never finished (the process died between writing the temporary file and renaming it) leaves
    /// its temporary file; the next write's prune deletes it once it is old, and leaves a fresh one (a write in progress).</summary>
    [Fact]
    public void GivenTemporaryFilesOfUnfinishedWrites_WhenAnotherEntryIsWritten_ThenTheStaleOnesAreDeleted()
    {
        var stale = Path.Combine(_dir.FullName, $"{new string('a', 64)}.0123456789abcdef.cwasm.{Guid.NewGuid():N}.tmp");
        var fresh = Path.Combine(_dir.FullName, $"{new string('b', 64)}.0123456789abcdef.cwasm.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(stale, new byte[1024]);
        File.WriteAllBytes(fresh, new byte[1024]);
        File.SetLastWriteTimeUtc(stale, DateTime.UtcNow - ModuleCache.StaleTemporaryAge - TimeSpan.FromMinutes(1));

        new ModuleCache(WasmEngine.Shared, _dir.FullName).GetOrCompile("a", Modules.Addition);

        File.Exists(stale).ShouldBeFalse();
        File.Exists(fresh).ShouldBeTrue();
        _dir.GetFiles("*.cwasm").ShouldHaveSingleItem();
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
