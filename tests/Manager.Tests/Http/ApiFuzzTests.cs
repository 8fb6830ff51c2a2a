using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace Propeller.Manager.Tests.Http;

/// <summary>
/// The OpenAPI document against the API itself, with seeded random requests on every route it describes: path
/// parameters (tasks that exist, ids that do not, garbage), query parameters (what the document names, plausible values
/// and garbage) and bodies built from the request body's schema, then mutated (fields of the wrong type, unknown fields,
/// deep nesting, truncated or broken JSON, other content types). Every answer must be one the document lists for the
/// route (so no 5xx beyond those documented), and every JSON answer must be valid against the schema the document gives
/// for that status; the manager must be ready at the end. PROPELLER_FUZZ_SEED and PROPELLER_FUZZ_REQUESTS repeat a run
/// or make it longer.
/// </summary>
public sealed class ApiFuzzTests
{
    /// <summary>What goes into a URL: within Kestrel's request line (8 KiB; past it Kestrel answers 414 itself, before any
    /// middleware), so no 5,000-character string.</summary>
    private static readonly string[] UrlStrings = [.. Fuzz.Strings.Where(t => t.Length <= 1000), new string('x', 1000)];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RandomRequestsOnEveryDocumentedRoute_AreAnsweredAsTheDocumentSays()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();
        var requests = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_REQUESTS"), out var n) ? n : 1500;
        var random = new Random(seed);
        await using var server = await ManagerServer.StartAsync("api_fuzz");
        var client = server.Client;

        var document = JsonNode.Parse(await client.GetStringAsync("/openapi/v1.json", Ct))!;
        var operations = Operations(document);
        operations.Count.ShouldBeGreaterThan(25);

        // Tasks to aim at: a few that exist (one deleted), beside ids that name nothing.
        var ids = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var created = await client.PostAsync("/tasks", Json($$"""{"name":"fuzz-{{i}}","file":"AGFzbQEAAAA=","inputs":[1,2]}"""), Ct);
            created.StatusCode.ShouldBe(HttpStatusCode.Created);
            ids.Add(JsonNode.Parse(await created.Content.ReadAsStringAsync(Ct))!["id"]!.GetValue<string>());
        }

        (await client.DeleteAsync($"/tasks/{ids[3]}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        var findings = new Dictionary<string, string>(StringComparer.Ordinal);
        var statuses = new SortedDictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < requests; i++)
        {
            var operation = operations[random.Next(operations.Count)];
            using var request = BuildRequest(operation, random, ids, document);
            var described = Clip($"{request.Method} {request.RequestUri}");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            var status = (int)response.StatusCode;
            var key = $"{operation.Method} {operation.Path} {status}";
            statuses[key] = statuses.GetValueOrDefault(key) + 1;
            if (response.Content.Headers.ContentType?.MediaType == "text/event-stream")
            {
                continue; // a stream that never ends: its status and type are what there is to check
            }

            var body = await response.Content.ReadAsStringAsync(timeout.Token);
            if (!operation.Responses.TryGetValue(status, out var schema))
            {
                findings.TryAdd(key, $"undocumented status: {described} -> {status} {Clip(body)}");
                continue;
            }

            if (schema is null)
            {
                continue;
            }

            if (response.Content.Headers.ContentType?.MediaType != "application/json" || body.Length == 0)
            {
                // GET /tasks/{id}/results answers an empty 200 when the task has no results (as the original).
                if (!(status == 200 && operation.Path == "/tasks/{taskId}/results" && body.Length == 0))
                {
                    findings.TryAdd(key + " body", $"not the documented JSON: {described} -> {status} {response.Content.Headers.ContentType} {Clip(body)}");
                }

                continue;
            }

            using var answer = JsonDocument.Parse(body);
            var results = schema.Evaluate(answer.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            if (!results.IsValid)
            {
                var errors = string.Join("; ", (results.Details ?? []).Where(d => d.Errors is { Count: > 0 }).Select(d => $"{d.InstanceLocation}: {string.Join(", ", d.Errors!.Values)}").Take(3));
                findings.TryAdd(key + " schema", $"answer not valid against the document: {described} -> {status} {Clip(body)}: {errors}");
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}, {requests} requests:\n" + string.Join("\n", statuses.Select(p => $"{p.Key}: {p.Value}")));
        findings.Values.ShouldBeEmpty($"seed {seed}");
        (await client.GetAsync("/health/ready", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await client.GetAsync("/tasks", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    private static string Clip(string text) => text.Length > 300 ? text[..300] + "..." : text;

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");

    private sealed record Operation(
        string Method, string Path, IReadOnlyList<string> PathParameters, IReadOnlyList<string> QueryParameters, string? BodyType, JsonNode? BodySchema,
        IReadOnlyDictionary<int, JsonSchema?> Responses);

    /// <summary>Every operation of the document: its parameters, request body, and a validator per documented status.</summary>
    private static List<Operation> Operations(JsonNode document)
    {
        var definitions = document["components"]?["schemas"]?.ToJsonString() ?? "{}";
        var operations = new List<Operation>();
        foreach (var (path, item) in document["paths"]!.AsObject())
        {
            foreach (var (method, node) in item!.AsObject())
            {
                var parameters = node!["parameters"]?.AsArray().Select(p => (Name: p!["name"]!.GetValue<string>(), In: p["in"]!.GetValue<string>())).ToList() ?? [];
                var content = node["requestBody"]?["content"]?.AsObject().FirstOrDefault();
                var responses = new Dictionary<int, JsonSchema?>();
                foreach (var (code, response) in node["responses"]!.AsObject())
                {
                    var schema = response!["content"]?["application/json"]?["schema"];
                    // The document's components become the schema's $defs, so its references resolve inside it.
                    var text = $$"""{"$schema":"https://json-schema.org/draft/2020-12/schema","$defs":{{definitions}},"allOf":[{{schema?.ToJsonString()}}]}""";
                    responses[int.Parse(code, System.Globalization.CultureInfo.InvariantCulture)] = schema is null ? null : JsonSchema.FromText(
                        text.Replace("#/components/schemas/", "#/$defs/", StringComparison.Ordinal),
                        new BuildOptions { SchemaRegistry = new SchemaRegistry() },
                        new Uri($"https://propeller.test/{method}{path.Replace('{', '_').Replace('}', '_')}/{code}"));
                }

                operations.Add(new Operation(
                    method.ToUpperInvariant(), path,
                    [.. parameters.Where(p => p.In == "path").Select(p => p.Name)],
                    [.. parameters.Where(p => p.In == "query").Select(p => p.Name)],
                    content?.Key, content?.Value?["schema"], responses));
            }
        }

        return operations;
    }

    private static HttpRequestMessage BuildRequest(Operation operation, Random random, List<string> ids, JsonNode document)
    {
        var path = operation.Path;
        foreach (var name in operation.PathParameters)
        {
            var value = random.Next(4) switch
            {
                0 or 1 => ids[random.Next(ids.Count)],
                2 => Guid.NewGuid().ToString(),
                _ => Fuzz.Pick(random, UrlStrings),
            };
            // Not %00: Kestrel refuses a target holding an encoded NUL itself (an empty 400, before any middleware).
            path = path.Replace("{" + name + "}", Uri.EscapeDataString(value.Length == 0 ? " " : value.Replace('\0', '0')), StringComparison.Ordinal);
        }

        var query = new List<string>();
        foreach (var name in operation.QueryParameters.Where(_ => random.Next(3) == 0))
        {
            query.Add($"{name}={Uri.EscapeDataString(random.Next(3) == 0 ? ids[random.Next(ids.Count)] : Fuzz.Pick(random, UrlStrings))}");
        }

        if (random.Next(10) == 0)
        {
            query.Add($"{Fuzz.Pick(random, ["offset", "limit", "unknown", "version", "at"])}={Uri.EscapeDataString(Fuzz.Pick(random, UrlStrings))}");
        }

        var request = new HttpRequestMessage(new HttpMethod(operation.Method), path + (query.Count > 0 ? "?" + string.Join('&', query) : ""));
        if (random.Next(8) == 0)
        {
            // A header holds visible ASCII only (HttpClient refuses the rest before sending).
            request.Headers.TryAddWithoutValidation("X-User-Id", Fuzz.Pick(random, [.. Fuzz.Strings.Where(t => t.All(c => c is >= ' ' and <= '~'))]));
        }

        if (operation.BodyType == "multipart/form-data")
        {
            var form = new MultipartFormDataContent();
            var file = new ByteArrayContent(random.Next(2) == 0 ? Convert.FromBase64String("AGFzbQEAAAA=") : RandomBytes(random, random.Next(0, 64)));
            form.Add(file, random.Next(4) == 0 ? "other" : "file", random.Next(4) == 0 ? "module.txt" : "module.wasm");
            request.Content = random.Next(6) == 0 ? new StringContent("--broken\r\n", Encoding.UTF8, "multipart/form-data") : form;
        }
        else if (operation.BodyType is not null || random.Next(6) == 0)
        {
            // Half the bodies start from one the route accepts, with one field drawn from the schema (so some succeed and
            // their answers are checked too); the rest are drawn from the schema whole.
            var body = operation.BodySchema is { } schema ? random.Next(2) == 0 && Accepted(operation) is { } accepted
                ? Changed(accepted, schema, document, random)
                : Value(schema, document, random, 0) : new JsonObject();
            var text = body?.ToJsonString() ?? "null";
            text = Fuzz.Mutate(text, random);
            request.Content = new StringContent(text, Encoding.UTF8);
            request.Content.Headers.ContentType = random.Next(10) switch
            {
                0 => null,
                1 => new MediaTypeHeaderValue("text/plain"),
                _ => new MediaTypeHeaderValue("application/json"),
            };
        }

        return request;
    }

    /// <summary>A body the route accepts, where there is one.</summary>
    private static JsonObject? Accepted(Operation operation) => (operation.Method, operation.Path) switch
    {
        ("POST", "/tasks") or ("PUT", "/tasks/{taskId}") => new JsonObject { ["name"] = "fuzz", ["file"] = "AGFzbQEAAAA=", ["inputs"] = new JsonArray(1, 2) },
        ("POST", "/tasks/{taskId}/invoke") => new JsonObject { ["inputs"] = new JsonArray("1") },
        _ => null,
    };

    /// <summary><paramref name="body"/> with one of the schema's properties set to a value drawn for it (or left as it is).</summary>
    private static JsonNode Changed(JsonObject body, JsonNode schema, JsonNode document, Random random)
    {
        if (schema["$ref"]?.GetValue<string>() is { } reference)
        {
            schema = document["components"]!["schemas"]![reference["#/components/schemas/".Length..]]!;
        }

        if (schema["properties"]?.AsObject().ToList() is { Count: > 0 } properties && random.Next(4) != 0)
        {
            var (name, property) = properties[random.Next(properties.Count)];
            body[name] = Value(property!, document, random, 1);
        }

        return body;
    }

    /// <summary>A value for <paramref name="schema"/>: usually of its type (its properties, some left out, some of the wrong type), sometimes anything.</summary>
    private static JsonNode? Value(JsonNode schema, JsonNode document, Random random, int depth)
    {
        if (schema["$ref"]?.GetValue<string>() is { } reference)
        {
            schema = document["components"]!["schemas"]![reference["#/components/schemas/".Length..]]!;
        }

        if (depth > 6 || random.Next(12) == 0)
        {
            return Fuzz.AnyValue(random, depth);
        }

        var types = schema["type"] switch
        {
            JsonArray array => array.Select(t => t!.GetValue<string>()).ToArray(),
            JsonValue value => [value.GetValue<string>()],
            _ => ["object"],
        };
        var type = Fuzz.Pick(random, types);
        switch (type)
        {
            case "object":
                var result = new JsonObject();
                foreach (var (name, property) in schema["properties"]?.AsObject() ?? [])
                {
                    if (random.Next(3) != 0)
                    {
                        result[name] = Value(property!, document, random, depth + 1);
                    }
                }

                if (schema["additionalProperties"] is JsonObject extra && random.Next(2) == 0)
                {
                    result[Fuzz.Pick(random, Fuzz.Strings)] = Value(extra, document, random, depth + 1);
                }

                if (random.Next(8) == 0)
                {
                    result["unknown_" + random.Next(100)] = Fuzz.AnyValue(random, depth + 1);
                }

                return result;
            case "array":
                var items = new JsonArray();
                for (var i = random.Next(0, 4); i > 0; i--)
                {
                    items.Add(schema["items"] is JsonObject item ? Value(item, document, random, depth + 1) : Fuzz.AnyValue(random, depth + 1));
                }

                return items;
            case "integer":
                return JsonValue.Create(Fuzz.Pick(random, new long[] { 0, 1, -1, 5, 100, int.MaxValue, long.MaxValue, long.MinValue, random.Next() }));
            case "number":
                return JsonValue.Create(Fuzz.Pick(random, new[] { 0.5, -1.25, 1e300, double.Epsilon }));
            case "boolean":
                return JsonValue.Create(random.Next(2) == 0);
            case "null":
                return null;
            default:
                return JsonValue.Create(Fuzz.Pick(random, Fuzz.Strings));
        }
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
