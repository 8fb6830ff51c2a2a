using System.Text.Json.Serialization;

namespace Propeller.Contracts;

/// <summary>Every error body, as in the original: <c>{"error": "..."}</c>.</summary>
public sealed record ErrorJson([property: JsonPropertyName("error")] string Error);
