namespace Propeller.Wasm;

/// <summary>A table of references: <see cref="Function"/> objects for funcref, any host object for externref.</summary>
public sealed class Table
{
    /// <summary>Implementation limit on table size, so table.grow cannot exhaust the host.</summary>
    public const int MaxElementsSupported = 10_000_000;

    internal object?[] Elements;

    public Table(Store store, ValueKind elementKind, uint minimum, uint? maximum = null, object? initial = null)
        : this(new TableType(elementKind, new Limits(minimum, maximum)), initial, store?.Limits)
    {
        ArgumentNullException.ThrowIfNull(store);
    }

    internal Table(TableType type, object? initial, StoreLimits? limiter = null)
    {
        Limiter = limiter;
        if (limiter is not null && type.Limits.Minimum > limiter.TableElements)
        {
            throw new TrapException(
                TrapCode.ResourceLimitExceeded,
                $"table minimum size of {type.Limits.Minimum} elements exceeds table limits ({limiter.TableElements} elements)");
        }

        if (type.ElementKind is not (ValueKind.FuncRef or ValueKind.ExternRef))
        {
            throw new WasmException("a table holds funcref or externref");
        }

        if (type.Limits.Minimum > MaxElementsSupported)
        {
            throw new WasmException($"table minimum size of {type.Limits.Minimum} exceeds the limit of {MaxElementsSupported}");
        }

        ElementKind = type.ElementKind;
        Maximum = type.Limits.Maximum;
        Elements = new object?[type.Limits.Minimum];
        if (initial is not null)
        {
            Array.Fill(Elements, initial);
        }
    }

    public ValueKind ElementKind { get; }

    public uint? Maximum { get; }

    public int Size => Elements.Length;

    internal StoreLimits? Limiter { get; }

    public TableType Type => new(ElementKind, new Limits((uint)Elements.Length, Maximum));

    public object? GetElement(int index) => Elements[index];

    public void SetElement(int index, object? value)
    {
        if (ElementKind == ValueKind.FuncRef && value is not (null or Function))
        {
            throw new WasmException("a funcref table only holds Function objects");
        }

        Elements[index] = value;
    }

    /// <summary>Grows by <paramref name="delta"/> elements set to <paramref name="initial"/>; returns the old size or -1.</summary>
    public int Grow(uint delta, object? initial)
    {
        var old = Elements.Length;
        var target = (long)old + delta;
        if (target > (Maximum ?? uint.MaxValue) || target > MaxElementsSupported
            || (Limiter is not null && target > Limiter.TableElements))
        {
            if (Limiter is { TrapOnGrowFailure: true })
            {
                Runtime.Traps.ResourceLimit($"table of {target} elements exceeds table limits");
            }

            return -1;
        }

        if (delta == 0)
        {
            return old;
        }

        object?[] bigger;
        try
        {
            bigger = new object?[target];
        }
        catch (OutOfMemoryException)
        {
            return -1;
        }

        Array.Copy(Elements, bigger, old);
        if (initial is not null)
        {
            Array.Fill(bigger, initial, old, (int)delta);
        }

        Elements = bigger;
        return old;
    }
}
