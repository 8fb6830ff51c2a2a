using System.Collections.Concurrent;
using System.Security.Cryptography;
using Propeller.WasmHost.Components;
using Wasmtime;
using Wasmtime.Components;

namespace Propeller.WasmHost;

/// <summary>
/// Compiled modules and components by the SHA-256 of their bytes, so a repeated binary never compiles again: in memory
/// (of each kind at most <see cref="MaxModules"/>, and binaries of at most <paramref name="maxMemoryBytes"/> together:
/// past either, the entries used longest ago are dropped down to three quarters, never the one just added), and on disk through <c>Serialize</c> when a directory is given. Disk
/// entries are named by the hash and by the engine's <see cref="WasmEngine.ConfigKey"/> (Wasmtime refuses code compiled
/// under another configuration); an entry that does not load is compiled again and rewritten. The directory holds at
/// most <paramref name="maxDiskBytes"/> of entries: after a write takes it over, the entries used longest ago are
/// deleted (a load marks its entry used) down to three quarters of that, and the temporary files of writes that never
/// finished (a crash between the write and the rename) are deleted once they are <see cref="StaleTemporaryAge"/> old.
/// The directory must be private to the proplet: deserialized code is trusted.
/// </summary>
public sealed class ModuleCache(
    WasmEngine engine, string? directory = null, long maxDiskBytes = ModuleCache.DefaultMaxDiskBytes, long maxMemoryBytes = ModuleCache.DefaultMaxMemoryBytes)
{
    /// <summary>Entries of each kind kept in memory (an instance in use keeps its code alive when its entry is dropped).</summary>
    public const int MaxModules = 256;

    /// <summary>
    /// The binaries behind each kind's entries in memory, together, by default: 256 MiB. Compiled code takes about as
    /// much again as its binary or more, and a count alone let 256 large modules (each up to the proplet's image limit)
    /// hold gigabytes on an edge device.
    /// </summary>
    public const long DefaultMaxMemoryBytes = 256L << 20;

    /// <summary>The disk entries' total size by default: 1 GiB.</summary>
    public const long DefaultMaxDiskBytes = 1L << 30;

    /// <summary>
    /// A temporary file older than this is left from a write that never finished, and deleted: a write in progress
    /// (this process's or another's on the same directory) takes milliseconds, not minutes.
    /// </summary>
    public static readonly TimeSpan StaleTemporaryAge = TimeSpan.FromMinutes(10);

    private static readonly string[] s_extensions = [".cwasm", ".cwasmc"];

    private readonly Lock _pruning = new();

    private readonly Shelf<Module> _modules = new();
    private readonly Shelf<CompiledComponent> _components = new();
    private long _uses;
    private readonly string _configHash = Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(engine.ConfigKey)))[..16];

    public WasmEngine Engine { get; } = engine;

    /// <summary>Compiles, or returns the module compiled before. Throws <see cref="WasmtimeException"/> for an invalid binary.</summary>
    public Module GetOrCompile(string name, ReadOnlySpan<byte> bytes)
    {
        var hash = Hash(bytes);
        return Cached(_modules, hash) ?? Compile(name, bytes.ToArray(), hash);
    }

    /// <summary>
    /// As <see cref="GetOrCompile(string, ReadOnlySpan{byte})"/>, without copying <paramref name="bytes"/> (it must not
    /// change meanwhile). <paramref name="sha256"/>, when given, is the SHA-256 of <paramref name="bytes"/> as lowercase hex,
    /// computed by the caller (the proplet's chunk assembly verifies every image against it, issue 17): the cache then
    /// does not hash the 5 MiB again. A wrong value would key the module under another binary's hash, so only pass one
    /// computed from these very bytes.
    /// </summary>
    public Module GetOrCompile(string name, byte[] bytes, string? sha256 = null)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        var hash = sha256 ?? Hash(bytes);
        return Cached(_modules, hash) ?? Compile(name, bytes, hash);
    }

    /// <summary>
    /// Compiles a component (with its exported functions' types, <see cref="ComponentTypes"/>), or returns the one compiled
    /// before. Throws <see cref="WasmtimeException"/> for an invalid binary.
    /// </summary>
    public CompiledComponent GetOrCompileComponent(ReadOnlySpan<byte> bytes)
    {
        var hash = Hash(bytes);
        if (Cached(_components, hash) is { } cached)
        {
            return cached;
        }

        var copy = bytes.ToArray();
        var component = Load(
            hash, "cwasmc", () => Component.FromBytes(Engine.Engine, copy), path => Component.DeserializeFile(Engine.Engine, path), c => c.Serialize());
        return Add(_components, hash, copy.Length, new CompiledComponent(component, ComponentTypes.Functions(component, Engine.Engine), WasmBinary.IsHttpProxy(copy)));
    }

    private Module Compile(string name, byte[] bytes, string hash)
    {
        // Said plainly (Wasmtime's words for it: "magic header not detected: bad magic number - expected=[: 0x0,...").
        if (WasmBinary.NotWasm(bytes) is { } notWasm)
        {
            throw new WasmtimeException(notWasm);
        }

        var module = Load(
            hash, "cwasm", () => Module.FromBytes(Engine.Engine, name, bytes), path => Module.DeserializeFile(Engine.Engine, name, path), m => m.Serialize());
        return Add(_modules, hash, bytes.Length, module);
    }

    private static string Hash(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private T? Cached<T>(Shelf<T> shelf, string hash)
        where T : class
    {
        if (!shelf.Entries.TryGetValue(hash, out var entry))
        {
            return null;
        }

        Volatile.Write(ref entry.Used, Interlocked.Increment(ref _uses));
        return entry.Value;
    }

    private T Add<T>(Shelf<T> shelf, string hash, long bytes, T value)
        where T : class
    {
        var added = new Shelf<T>.Entry(value, bytes) { Used = Interlocked.Increment(ref _uses) };
        var entry = shelf.Entries.GetOrAdd(hash, added);
        if (!ReferenceEquals(entry, added))
        {
            return entry.Value;
        }

        if (Interlocked.Add(ref shelf.Bytes, bytes) > maxMemoryBytes || shelf.Entries.Count > MaxModules)
        {
            lock (shelf)
            {
                // The entries used longest ago go first, down to three quarters of both bounds; never the one just
                // added (a binary over the whole budget is kept alone).
                foreach (var (key, old) in shelf.Entries.OrderBy(p => Volatile.Read(ref p.Value.Used)).ToList())
                {
                    if (Volatile.Read(ref shelf.Bytes) <= maxMemoryBytes / 4 * 3 && shelf.Entries.Count <= MaxModules / 4 * 3)
                    {
                        break;
                    }

                    if (key != hash && shelf.Entries.TryRemove(new KeyValuePair<string, Shelf<T>.Entry>(key, old)))
                    {
                        Interlocked.Add(ref shelf.Bytes, -old.Bytes);
                    }
                }
            }
        }

        return value;
    }

    /// <summary>How many entries of each kind are in memory, and the size of their binaries together.</summary>
    public (int Modules, long ModuleBytes, int Components, long ComponentBytes) InMemory =>
        (_modules.Entries.Count, Volatile.Read(ref _modules.Bytes), _components.Entries.Count, Volatile.Read(ref _components.Bytes));

    private T Load<T>(string hash, string extension, Func<T> compile, Func<string, T> deserialize, Func<T, byte[]> serialize)
    {
        if (directory is null)
        {
            return compile();
        }

        var path = Path.Combine(directory, $"{hash}.{_configHash}.{extension}");
        if (File.Exists(path))
        {
            try
            {
                var loaded = deserialize(path);
                Touch(path);
                return loaded;
            }
            catch (WasmtimeException)
            {
                // Written by another Wasmtime build or damaged: compile again and replace it below.
            }
        }

        var compiled = compile();
        try
        {
            Directory.CreateDirectory(directory);
            var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(temporary, serialize(compiled));
            File.Move(temporary, path, overwrite: true);
            Prune(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The disk cache is an optimisation: a read-only or full disk only costs a compile next time.
        }

        return compiled;
    }

    /// <summary>Marks an entry used now (its access time, set explicitly: mounts often do not keep it by themselves).</summary>
    private static void Touch(string path)
    {
        try
        {
            File.SetLastAccessTimeUtc(path, DateTime.UtcNow);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // a read-only cache is still a cache
        }
    }

    /// <summary>
    /// Deletes the temporary files of writes that never finished, then the entries used longest ago while the
    /// directory's entries hold more than the budget.
    /// </summary>
    private void Prune(string directory)
    {
        lock (_pruning)
        {
            var files = new DirectoryInfo(directory).EnumerateFiles().ToList();
            var stale = DateTime.UtcNow - StaleTemporaryAge;
            foreach (var orphan in files.Where(f => f.Extension == ".tmp" && f.Name.Contains(".cwasm", StringComparison.Ordinal) && f.LastWriteTimeUtc < stale))
            {
                Delete(orphan);
            }

            var entries = files.Where(f => s_extensions.Contains(f.Extension, StringComparer.Ordinal)).ToList();
            var total = entries.Sum(f => f.Length);
            if (total <= maxDiskBytes)
            {
                return;
            }

            foreach (var entry in entries.OrderBy(f => f.LastAccessTimeUtc))
            {
                if (total <= maxDiskBytes / 4 * 3)
                {
                    break;
                }

                // Read before the delete: FileInfo.Delete forgets the file's state, and Length after it throws
                // FileNotFoundException, so the total never went down and every entry was deleted.
                var length = entry.Length;
                if (Delete(entry))
                {
                    total -= length;
                }
            }
        }
    }

    private static bool Delete(FileInfo file)
    {
        try
        {
            file.Delete();
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // in use elsewhere or gone already
            return false;
        }
    }

    /// <summary>One kind's entries in memory: by hash, with their binaries' size together and when each was last used.</summary>
    private sealed class Shelf<T>
        where T : class
    {
        public ConcurrentDictionary<string, Entry> Entries { get; } = new(StringComparer.Ordinal);

        public long Bytes;

        public sealed class Entry(T value, long bytes)
        {
            public T Value { get; } = value;

            public long Bytes { get; } = bytes;

            public long Used;
        }
    }
}
