using System.Text.Json.Serialization;

namespace Propeller.Proxy;

/// <summary>Source-generated JSON for the slim host's endpoints.</summary>
[JsonSerializable(typeof(HealthJson))]
internal sealed partial class ProxyJsonContext : JsonSerializerContext;
