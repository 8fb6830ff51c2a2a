using Propeller.Wasm.Binary;
using Propeller.Wasm.Compilation;

namespace Propeller.Wasm;

/// <summary>A decoded, validated and compiled module; instantiate it any number of times.</summary>
public sealed class Module
{
    private Module(Engine engine, string name, CompiledModule compiled)
    {
        Engine = engine;
        Name = name;
        Compiled = compiled;
        Imports = [.. Info.Imports.Select(i => new ImportDescriptor(
            i.Module,
            i.Name,
            i.Kind,
            i.Kind == ExternKind.Function ? Info.Types[i.TypeIndex] : null,
            i.Kind == ExternKind.Table ? i.Table : null,
            i.Kind == ExternKind.Memory ? i.Memory : null,
            i.Kind == ExternKind.Global ? i.Global : null))];
    }

    public Engine Engine { get; }

    public string Name { get; }

    public IReadOnlyList<ImportDescriptor> Imports { get; }

    public IReadOnlyList<ExportDescriptor> Exports => Info.Exports;

    /// <summary>Time spent decoding, validating and generating code (JIT compilation happens lazily on first call).</summary>
    public TimeSpan CompileTime => Compiled.CompileTime;

    internal CompiledModule Compiled { get; }

    internal ModuleInfo Info => Compiled.Info;

    /// <summary>Decodes, validates and compiles; throws <see cref="ModuleException"/> with the byte offset of any problem.</summary>
    public static Module FromBytes(Engine engine, string name, ReadOnlySpan<byte> bytes)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return new Module(engine, name, engine.Compile(bytes.ToArray()));
    }

    public static Module FromFile(Engine engine, string path)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return new Module(engine, Path.GetFileNameWithoutExtension(path), engine.Compile(File.ReadAllBytes(path)));
    }

    /// <summary>Returns null when the bytes are a valid module, otherwise the reason.</summary>
    public static string? Validate(Engine engine, ReadOnlySpan<byte> bytes)
    {
        try
        {
            FromBytes(engine, "validate", bytes);
            return null;
        }
        catch (ModuleException e)
        {
            return e.Message;
        }
    }
}
