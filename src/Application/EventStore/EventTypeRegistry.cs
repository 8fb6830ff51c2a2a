namespace Propeller.Application.EventStore;

/// <summary>
/// Explicit, stable aliases for persisted event types ("task.created.v1"): renaming a CLR type never renames a stored
/// event. Both directions are checked for collisions at registration, so a mistake fails at startup.
/// </summary>
public sealed class EventTypeRegistry
{
    private readonly Dictionary<string, Type> _byAlias = new(StringComparer.Ordinal);
    private readonly Dictionary<Type, string> _byType = [];

    public EventTypeRegistry Register<TEvent>(string alias) => Register(typeof(TEvent), alias);

    public EventTypeRegistry Register(Type type, string alias)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentException.ThrowIfNullOrWhiteSpace(alias);
        if (_byAlias.TryGetValue(alias, out var existing) && existing != type)
        {
            throw new InvalidOperationException($"event alias '{alias}' is already registered for {existing.FullName}");
        }

        if (_byType.TryGetValue(type, out var existingAlias) && existingAlias != alias)
        {
            throw new InvalidOperationException($"{type.FullName} is already registered as '{existingAlias}'");
        }

        _byAlias[alias] = type;
        _byType[type] = alias;
        return this;
    }

    public IReadOnlyCollection<string> Aliases => _byAlias.Keys;

    /// <summary>Every alias with its type: what a store registers (Marten's MapEventType), so a new event needs one line.</summary>
    public IReadOnlyDictionary<string, Type> Entries => _byAlias;

    public string AliasOf(Type type) =>
        _byType.TryGetValue(type, out var alias)
            ? alias
            : throw new InvalidOperationException($"{type.FullName} has no registered event alias");

    public bool TryResolve(string alias, out Type type) => _byAlias.TryGetValue(alias, out type!);
}
