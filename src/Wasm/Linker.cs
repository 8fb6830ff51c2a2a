namespace Propeller.Wasm;

/// <summary>Resolves a module's imports by (module, name) and instantiates it.</summary>
public sealed class Linker
{
    private readonly Dictionary<(string Module, string Name), object> _definitions = [];

    public Linker(Engine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        Engine = engine;
    }

    public Engine Engine { get; }

    /// <summary>When false (the default), defining a name twice throws.</summary>
    public bool AllowShadowing { get; set; }

    /// <summary>Defines a <see cref="Function"/>, <see cref="Memory"/>, <see cref="Table"/> or <see cref="Global"/>.</summary>
    public void Define(string module, string name, object item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item is not (Function or Memory or Table or Global))
        {
            throw new ArgumentException("only a Function, Memory, Table or Global can be defined", nameof(item));
        }

        if (!AllowShadowing && _definitions.ContainsKey((module, name)))
        {
            throw new WasmException($"{module}.{name} is already defined");
        }

        _definitions[(module, name)] = item;
    }

    /// <summary>Defines a host function from a typed delegate (see <see cref="Function.FromDelegate"/>).</summary>
    public void DefineFunction(string module, string name, Delegate callback) =>
        Define(module, name, Function.FromDelegate(callback, $"{module}.{name}"));

    /// <summary>Defines a host function with the untyped calling convention.</summary>
    public void DefineFunction(string module, string name, FuncType type, HostCallback callback) =>
        Define(module, name, Function.FromCallback(type, callback, $"{module}.{name}"));

    /// <summary>Makes every export of <paramref name="instance"/> importable under <paramref name="module"/>.</summary>
    public void DefineInstance(string module, Instance instance)
    {
        ArgumentNullException.ThrowIfNull(instance);
        foreach (var (name, item) in instance.Exports)
        {
            _definitions[(module, name)] = item;
        }
    }

    public object? Get(string module, string name) => _definitions.GetValueOrDefault((module, name));

    public Instance Instantiate(Store store, Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var imports = new object[module.Imports.Count];
        for (var i = 0; i < imports.Length; i++)
        {
            var import = module.Imports[i];
            imports[i] = _definitions.GetValueOrDefault((import.ModuleName, import.Name))
                ?? throw new LinkException($"unknown import: {import.ModuleName}.{import.Name}");
        }

        return new Instance(store, module, imports);
    }
}
