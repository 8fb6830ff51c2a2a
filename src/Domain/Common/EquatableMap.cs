using System.Collections;
using System.Collections.Immutable;

namespace Propeller.Domain.Common;

/// <summary>An immutable string map with value equality (see <see cref="EquatableArray{T}"/> for why).</summary>
public readonly struct EquatableMap : IEquatable<EquatableMap>, IReadOnlyDictionary<string, string>
{
    private readonly ImmutableSortedDictionary<string, string>? _items;

    public EquatableMap(IEnumerable<KeyValuePair<string, string>> items) =>
        _items = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, items);

    public static EquatableMap Empty => new([]);

    private ImmutableSortedDictionary<string, string> Items => _items ?? ImmutableSortedDictionary<string, string>.Empty;

    public int Count => Items.Count;

    /// <summary>This map with <paramref name="entries"/> laid over it (their values win).</summary>
    public EquatableMap SetItems(IEnumerable<KeyValuePair<string, string>> entries) => new(Items.SetItems(entries));

    public IEnumerable<string> Keys => Items.Keys;

    public IEnumerable<string> Values => Items.Values;

    public string this[string key] => Items[key];

    public bool ContainsKey(string key) => Items.ContainsKey(key);

    public bool TryGetValue(string key, out string value) => Items.TryGetValue(key, out value!);

    public bool Equals(EquatableMap other) => Items.SequenceEqual(other.Items);

    public override bool Equals(object? obj) => obj is EquatableMap other && Equals(other);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var (key, value) in Items)
        {
            hash.Add(key);
            hash.Add(value);
        }

        return hash.ToHashCode();
    }

    public IEnumerator<KeyValuePair<string, string>> GetEnumerator() => Items.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public static bool operator ==(EquatableMap left, EquatableMap right) => left.Equals(right);

    public static bool operator !=(EquatableMap left, EquatableMap right) => !left.Equals(right);
}
