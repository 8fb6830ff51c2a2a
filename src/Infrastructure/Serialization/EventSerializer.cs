using System.Text.Json;
using Propeller.Application.EventStore;

namespace Propeller.Infrastructure.Serialization;

/// <summary>Turns domain events into (alias, JSON) and back, through the <see cref="EventTypeRegistry"/>.</summary>
public sealed class EventSerializer(EventTypeRegistry registry)
{
    public EventTypeRegistry Registry => registry;

    public (string Alias, string Json) Serialize(object @event)
    {
        ArgumentNullException.ThrowIfNull(@event);
        var type = @event.GetType();
        return (registry.AliasOf(type), JsonSerializer.Serialize(@event, type, JsonDefaults.Options));
    }

    /// <exception cref="UnknownEventTypeException">The alias is not registered.</exception>
    public object Deserialize(string alias, string json, string streamId, long version)
    {
        if (!registry.TryResolve(alias, out var type))
        {
            throw new UnknownEventTypeException(alias, streamId, version);
        }

        try
        {
            return JsonSerializer.Deserialize(json, type, JsonDefaults.Options)
                ?? throw new InvalidDataException($"event '{alias}' (stream '{streamId}', version {version}) is null");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"event '{alias}' (stream '{streamId}', version {version}) does not match {type.Name}: {ex.Message}", ex);
        }
    }

    public static string SerializeMetadata(EventMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return JsonSerializer.Serialize(new StoredMetadata(metadata.CorrelationId, metadata.CausationId, metadata.UserId, metadata.Headers), JsonDefaults.Options);
    }

    public static EventMetadata DeserializeMetadata(string json, DateTimeOffset timestamp)
    {
        var stored = JsonSerializer.Deserialize<StoredMetadata>(json, JsonDefaults.Options);
        return new EventMetadata(stored?.CorrelationId, stored?.CausationId, stored?.UserId, timestamp, stored?.Headers);
    }

    public static string SerializeState<TState>(TState state) => JsonSerializer.Serialize(state, JsonDefaults.Options);

    public static TState? DeserializeState<TState>(string json) => JsonSerializer.Deserialize<TState>(json, JsonDefaults.Options);

    private sealed record StoredMetadata(string? CorrelationId, string? CausationId, string? UserId, IReadOnlyDictionary<string, string>? Headers);
}
