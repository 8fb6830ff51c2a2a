namespace Propeller.Wasm;

/// <summary>A global variable cell. Imported mutable globals share the cell with the exporter.</summary>
public sealed class Global
{
    internal long Bits;
    internal object? Reference;

    public Global(Store store, ValueKind kind, bool mutable, Value initial)
        : this(new GlobalType(kind, mutable))
    {
        ArgumentNullException.ThrowIfNull(store);
        Assign(initial);
    }

    internal Global(GlobalType type)
    {
        Type = type;
    }

    public GlobalType Type { get; }

    public Value Value => Value.FromBits(Type.Kind, Bits, Reference);

    /// <summary>Sets the value from the host; immutable globals refuse.</summary>
    public void SetValue(Value value)
    {
        if (!Type.Mutable)
        {
            throw new WasmException("global is immutable");
        }

        Assign(value);
    }

    internal void Assign(Value value)
    {
        if (value.Kind != Type.Kind)
        {
            throw new WasmException($"global of type {FuncType.Name(Type.Kind)} cannot hold {FuncType.Name(value.Kind)}");
        }

        Bits = value.Bits;
        Reference = value.Reference;
    }
}
