using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Propeller.Manager.Tests.Tasks;

/// <summary>
/// A U+0000 in a task's fields is refused with 400 before any command runs. Sent to PostgreSQL to refuse (22P05), it
/// failed the batch of commands it joined, and now and then left the pooled connection out of step with the server
/// (Npgsql with auto-prepared statements), so other clients' good requests failed with 500 after it.
/// </summary>
public sealed class NulValueTests : IAsyncLifetime
{
    private ManagerServer _server = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync("api_nul_values", null);

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task GivenCreatesWithANulAmongGoodOnes_WhenSentConcurrently_ThenEachBadOneIs400AndEveryGoodOneIsCreated()
    {
        var failed = new ConcurrentBag<string>();
        await Task.WhenAll(Enumerable.Range(0, 16).Select(client => Task.Run(
            async () =>
            {
                for (var i = 0; i < 40; i++)
                {
                    var nul = (i + client) % 3 == 0;
                    using var response = await _server.Client.PostAsync(
                        "/tasks", new StringContent(nul ? """{"name":"a\u0000b"}""" : """{"name":"ok"}""", Encoding.UTF8, "application/json"), Ct);
                    var body = await response.Content.ReadAsStringAsync(Ct);
                    if (nul ? response.StatusCode != HttpStatusCode.BadRequest || !body.Contains(@"name must not contain \\u0000", StringComparison.Ordinal)
                            : response.StatusCode != HttpStatusCode.Created)
                    {
                        failed.Add($"{(nul ? "bad" : "good")}: {(int)response.StatusCode} {body}");
                    }
                }
            },
            Ct)));

        failed.ShouldBeEmpty(string.Join('\n', failed.Take(5)) + "\n" + _server.Warnings);
        _server.Warnings.ToString().ShouldNotContain("22P05");
    }

    [Theory]
    [InlineData("""{"name":"main","inputs":["1","\u0000"]}""", "inputs")]
    [InlineData("""{"name":"main","env":{"K\u0000":"v"}}""", "env")]
    [InlineData("""{"name":"main","metadata":{"k":["\u0000"]}}""", "metadata")]
    [InlineData("""{"name":"main","image_url":"r/i\u0000:1"}""", "image_url")]
    public async Task GivenAFieldWithANul_WhenCreatedOrUpdated_ThenItIs400NamingTheField(string body, string field)
    {
        using var created = await _server.Client.PostAsync("/tasks", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe($@"{field} must not contain \u0000");

        using var good = await _server.Client.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await good.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        using var updated = await _server.Client.PutAsync($"/tasks/{id}", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        updated.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await updated.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe($@"{field} must not contain \u0000");
    }

    /// <summary>A JSON field holding a lone surrogate escape (jsonb refuses it, .NET cannot read it as a string) is a 400
    /// naming the field; it was a 500 from inside the command.</summary>
    [Theory]
    [InlineData("""{"name":"main","metadata":{"k\udc00":"v"}}""", "metadata")]
    [InlineData("""{"name":"main","metadata":{"k":["\ud800"]}}""", "metadata")]
    [InlineData("""{"name":"main","monitoring_profile":{"interval":"\udfff"}}""", "monitoring_profile")]
    [InlineData("""{"name":"main","monitoring_profile":{"\udc00":1}}""", "monitoring_profile")]
    public async Task GivenAJsonFieldWithALoneSurrogate_WhenCreatedOrUpdated_ThenItIs400NamingTheField(string body, string field)
    {
        var expected = $"{field} must be valid Unicode (a lone surrogate such as \\udc00, or invalid UTF-8, is not)";
        using var created = await _server.Client.PostAsync("/tasks", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        var text = await created.Content.ReadAsStringAsync(Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.BadRequest, text);
        JsonDocument.Parse(text).RootElement.GetProperty("error").GetString().ShouldBe(expected);

        using var good = await _server.Client.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await good.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        using var updated = await _server.Client.PutAsync($"/tasks/{id}", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        updated.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await updated.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe(expected);
        _server.Warnings.ToString().ShouldNotContain("InvalidOperationException");
    }

    /// <summary>Raw invalid UTF-8 (an encoded surrogate, an overlong NUL) in a JSON field is a 400 naming the field; a
    /// create mapped the field to text before the validation and failed with a 500.</summary>
    [Theory]
    [InlineData("metadata", """{"name":"main","metadata":{"a":"#"}}""", new byte[] { 0xED, 0xA0, 0x80 })]
    [InlineData("metadata", """{"name":"main","metadata":{"#":1}}""", new byte[] { 0xC0, 0x80 })]
    [InlineData("monitoring_profile", """{"name":"main","monitoring_profile":{"#":1}}""", new byte[] { 0xFF })]
    public async Task GivenAJsonFieldWithInvalidUtf8_WhenCreatedOrUpdated_ThenItIs400NamingTheField(string field, string template, byte[] bad)
    {
        var hash = template.IndexOf('#', StringComparison.Ordinal);
        byte[] body = [.. Encoding.UTF8.GetBytes(template[..hash]), .. bad, .. Encoding.UTF8.GetBytes(template[(hash + 1)..])];
        var expected = $"{field} must be valid Unicode (a lone surrogate such as \\udc00, or invalid UTF-8, is not)";
        using var created = await _server.Client.PostAsync("/tasks", Raw(body), Ct);
        var text = await created.Content.ReadAsStringAsync(Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.BadRequest, text + "\n" + _server.Warnings);
        JsonDocument.Parse(text).RootElement.GetProperty("error").GetString().ShouldBe(expected);

        using var good = await _server.Client.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await good.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        using var updated = await _server.Client.PutAsync($"/tasks/{id}", Raw(body), Ct);
        (await updated.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe(expected);
        _server.Warnings.ToString().ShouldNotContain("InvalidOperationException");

        static ByteArrayContent Raw(byte[] bytes)
        {
            var content = new ByteArrayContent(bytes);
            content.Headers.ContentType = new("application/json");
            return content;
        }
    }

    /// <summary>jsonb's numeric takes 131,072 digits before the point and 16,383 after; one beyond is refused here, not by PostgreSQL.</summary>
    [Theory]
    [InlineData("1e131071", true)]
    [InlineData("0.5e131072", true)]
    [InlineData("1e-16383", true)]
    [InlineData("0e200000", true)]
    [InlineData("0e-20000", false)]
    [InlineData("0e99999999999999999999", false)]
    [InlineData("1e131072", false)]
    [InlineData("-12.5e131071", false)]
    [InlineData("1e-16384", false)]
    [InlineData("1e99999999999999999999", false)]
    public async Task GivenMetadataWithAHugeNumber_WhenCreated_ThenOnlyWhatPostgresCanStoreIsTaken(string number, bool storable)
    {
        using var created = await _server.Client.PostAsync("/tasks", new StringContent($$$"""{"name":"main","metadata":{"n":{{{number}}}}}""", Encoding.UTF8, "application/json"), Ct);
        var body = await created.Content.ReadAsStringAsync(Ct);
        created.StatusCode.ShouldBe(storable ? HttpStatusCode.Created : HttpStatusCode.BadRequest, body);
        if (!storable)
        {
            body.ShouldContain("metadata holds a number beyond PostgreSQL's numeric range");
        }
    }
}
