using System.Collections.Concurrent;
using System.Security.Cryptography;
using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// Compiled modules by the SHA-256 of their bytes, so a repeated binary never compiles again: in memory (at most
/// <see cref="MaxModules"/>), and on disk through <see cref="Module.Serialize"/> when a directory is given. Disk entries
/// are named by the hash and by the engine's <see cref="WasmEngine.ConfigKey"/> (Wasmtime refuses code compiled under
/// another configuration); an entry that does not load is compiled again and rewritten. The directory must be private to
/// the proplet: deserialized code is trusted.
/// </summary>
public sealed class ModuleCache(WasmEngine engine, string? directory = null)
{
    /// <summary>Modules kept in memory; beyond that an arbitrary entry is dropped (an instance in use keeps its module alive).</summary>
    public const int MaxModules = 256;

    private readonly ConcurrentDictionary<string, Module> _modules = new(StringComparer.Ordinal);
    private readonly string _configHash = Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(engine.ConfigKey)))[..16];

    public WasmEngine Engine { get; } = engine;

    /// <summary>Compiles, or returns the module compiled before. Throws <see cref="WasmtimeException"/> for an invalid binary.</summary>
    public Module GetOrCompile(string name, ReadOnlySpan<byte> bytes)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (_modules.TryGetValue(hash, out var cached))
        {
            return cached;
        }

        var module = Load(hash, name, bytes);
        if (_modules.Count >= MaxModules)
        {
            foreach (var key in _modules.Keys.Take(MaxModules / 4))
            {
                _modules.TryRemove(key, out _);
            }
        }

        return _modules.GetOrAdd(hash, module);
    }

    private Module Load(string hash, string name, ReadOnlySpan<byte> bytes)
    {
        if (directory is null)
        {
            return Module.FromBytes(Engine.Engine, name, bytes);
        }

        var path = Path.Combine(directory, $"{hash}.{_configHash}.cwasm");
        if (File.Exists(path))
        {
            try
            {
                return Module.DeserializeFile(Engine.Engine, name, path);
            }
            catch (WasmtimeException)
            {
                // Written by another Wasmtime build or damaged: compile again and replace it below.
            }
        }

        var module = Module.FromBytes(Engine.Engine, name, bytes);
        try
        {
            Directory.CreateDirectory(directory);
            var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(temporary, module.Serialize());
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The disk cache is an optimisation: a read-only or full disk only costs a compile next time.
        }

        return module;
    }
}
