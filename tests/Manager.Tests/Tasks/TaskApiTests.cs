using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Propeller.Manager.Tests.Tasks;

/// <summary>The task routes against the original's contract (spec propeller-manager.md §1–§2) and our documented fixes.</summary>
public sealed class TaskApiTests : IAsyncLifetime
{
    private const string AddWasm = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL";
    private ManagerServer _server = null!;

    private const string Schema = "api_tasks";

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(Schema, null);

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<JsonElement> BodyAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;

    private async Task<string> CreateAsync(string json = """{"name":"add"}""")
    {
        var response = await Http.PostAsync("/tasks", Json(json), Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.Created);
        return (await BodyAsync(response)).GetProperty("id").GetString()!;
    }

    private async Task<int> StateAsync(string id) => (await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct))).GetProperty("state").GetInt32();

    [Fact]
    public async Task List_FiltersByStateAndName_NewestFirst_AndRejectsBadValues()
    {
        var one = await CreateAsync("""{"name":"alpha"}""");
        var two = await CreateAsync("""{"name":"Alphabet"}""");
        await CreateAsync("""{"name":"beta"}""");
        (await Http.PostAsync($"/tasks/{two}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        static IEnumerable<string?> Ids(JsonElement page) => page.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("id").GetString());
        var byName = await BodyAsync(await Http.GetAsync("/tasks?name=ALPHA&order=newest", Ct));
        byName.GetProperty("total").GetInt64().ShouldBe(2);
        Ids(byName).ShouldBe([two, one]);
        Ids(await BodyAsync(await Http.GetAsync("/tasks?state=scheduled", Ct))).ShouldBe([two]);
        Ids(await BodyAsync(await Http.GetAsync("/tasks?state=0&name=alpha", Ct))).ShouldBe([one]);
        foreach (var bad in new[] { "state=9", "state=done", "order=sideways", "state=scheduled,running", "state=1,2", "offset=18446744073709551615", "offset=9223372036854775809" })
        {
            (await Http.GetAsync("/tasks?" + bad, Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        }
    }

    [Fact]
    public async Task Upload_SetsTheFile_FromAWasmPart_AndRejectsEverythingElse()
    {
        var id = await CreateAsync();
        var wasm = Convert.FromBase64String(AddWasm);
        MultipartFormDataContent Form(byte[] bytes, string name, string part = "file") =>
            new() { { new ByteArrayContent(bytes), part, name } };

        var uploaded = await Http.PutAsync($"/tasks/{id}/upload", Form(wasm, "add.wasm"), Ct);

        uploaded.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await BodyAsync(uploaded)).GetProperty("file").GetString().ShouldBe(AddWasm[..10] + "<REDACTED>" + AddWasm[^10..]);
        (await Http.PutAsync($"/tasks/{id}/upload", Form(wasm, "add.txt"), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PutAsync($"/tasks/{id}/upload", Form("nope"u8.ToArray(), "add.wasm"), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PutAsync($"/tasks/{id}/upload", Form(wasm, "add.wasm", part: "other"), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PutAsync($"/tasks/{id}/upload", Json("{}"), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PutAsync($"/tasks/{Guid.NewGuid()}/upload", Form(wasm, "add.wasm"), Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.PutAsync("/tasks/not-a-uuid/upload", Form(wasm, "add.wasm"), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
    }

    /// <summary>A module larger than Kestrel's default body limit (30,000,000 bytes) is taken, as the original takes up to
    /// 100 MiB.</summary>
    [Fact]
    public async Task Upload_OfAModuleAbove30MB_IsTaken()
    {
        var id = await CreateAsync();
        var wasm = new byte[31 * 1024 * 1024];
        "\0asm\u0001\0\0\0"u8.CopyTo(wasm);

        var uploaded = await Http.PutAsync($"/tasks/{id}/upload", new MultipartFormDataContent { { new ByteArrayContent(wasm), "file", "big.wasm" } }, Ct);

        uploaded.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Create_Returns201WithLocationAndTheRedactedTask_IgnoringServerOwnedFields()
    {
        var response = await Http.PostAsync("/tasks", Json($$"""
            {"id":"client-id","name":"add","file":"{{AddWasm}}","inputs":[10,"32",1.50],"env":{"K":"V"},
             "state":3,"results":"forged","metadata":{"team":"edge"},"cli_args":["--invoke","main"]}
            """), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.Created);
        var task = await BodyAsync(response);
        var id = task.GetProperty("id").GetString()!;
        Guid.TryParse(id, out _).ShouldBeTrue();
        id.ShouldNotBe("client-id");
        response.Headers.Location!.ToString().ShouldBe($"/tasks/{id}");
        task.GetProperty("state").GetInt32().ShouldBe(0);
        task.TryGetProperty("results", out _).ShouldBeFalse();
        task.GetProperty("file").GetString().ShouldBe("AGFzbQEAAA<REDACTED>cAIAAgAWoL");
        task.GetProperty("inputs").EnumerateArray().Select(e => e.GetString()).ShouldBe(["10", "32", "1.50"]);
        task.GetProperty("kind").GetString().ShouldBe("standard");
        task.GetProperty("priority").GetInt32().ShouldBe(50);
        task.GetProperty("metadata").GetProperty("team").GetString().ShouldBe("edge");
        task.GetProperty("finish_time").GetString().ShouldBe("0001-01-01T00:00:00Z");
        task.GetProperty("cli_args").EnumerateArray().Count().ShouldBe(2);
    }

    [Fact]
    public async Task Create_WithoutCliArgs_WritesNull()
    {
        var task = await BodyAsync(await Http.GetAsync($"/tasks/{await CreateAsync()}", Ct));

        task.GetProperty("cli_args").ValueKind.ShouldBe(JsonValueKind.Null);
        task.TryGetProperty("file", out _).ShouldBeFalse();
    }

    /// <summary>Only an empty name is refused, as by the original: one of whitespace is a name.</summary>
    [Fact]
    public async Task Create_WithANameOfWhitespace_IsCreated()
    {
        var response = await Http.PostAsync("/tasks", Json("""{"name":" \u2028"}"""), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.Created);
        (await BodyAsync(response)).GetProperty("name").GetString().ShouldBe(" \u2028");
    }

    [Theory]
    [InlineData("""{"name":""}""", "missing identity name")]
    [InlineData("""{"name":"a","priority":101}""", "priority must be between 0 and 100")]
    [InlineData("""{"name":"a","run_if":"maybe"}""", "run_if")]
    [InlineData("""{"name":"a","broadcast":true,"proplet_id":"p"}""", "mutually exclusive")]
    [InlineData("""{"name":"a","depends_on":["x"]}""", "workflow_id is required")]
    [InlineData("""{"name":"a","file":"not base64!"}""", "base64")]
    [InlineData("""{"name":"a","metadata":[1]}""", "metadata must be a JSON object")]
    [InlineData("""{"name":"a","inputs":[true]}""", "invalid JSON body: inputs[0]: expected a string or number")]
    [InlineData("""{"name":"a","inputs":"x"}""", "invalid JSON body: inputs: expected an array of strings or numbers")]
    [InlineData("""{"name":"a",""", "invalid JSON body")]
    [InlineData("""{"name":"a","created_at":"garbage"}""", "invalid JSON body: created_at: expected an RFC 3339 time")]
    [InlineData("""{"name":"a","next_run":"2026-01-01"}""", "invalid JSON body: next_run: expected an RFC 3339 time")]
    [InlineData("""{"name":"a","start_time":"2026-01-01T10:00:00"}""", "invalid JSON body: start_time: expected an RFC 3339 time")]
    [InlineData("""{"name":"a","finish_time":"01/02/2026 10:00"}""", "invalid JSON body: finish_time: expected an RFC 3339 time")]
    [InlineData("""{"name":5}""", "invalid JSON body: name: expected a string")]
    [InlineData("""{"name":"a","cli_args":["x",1]}""", "invalid JSON body: cli_args[1]: expected a string")]
    [InlineData("""{"name":"a","env":{"A":[1]}}""", "invalid JSON body: env.A: expected a string")]
    [InlineData("""{"name":"a","depends_on":"x"}""", "invalid JSON body: depends_on: expected an array of strings")]
    [InlineData("""{"name":"a","env":"A=1"}""", "invalid JSON body: env: expected an object of strings")]
    [InlineData("""{"name":"a","priority":"high"}""", "invalid JSON body: priority: expected a whole number")]
    [InlineData("""{"name":"a","daemon":"yes"}""", "invalid JSON body: daemon: expected true or false")]
    [InlineData("""{"name":"a","Priority":"x"}""", "invalid JSON body: Priority: expected a whole number")] // read case-insensitively
    [InlineData("""{"Env":{"A":1}}""", "invalid JSON body: Env.A: expected a string")]
    [InlineData("""[{"name":"a"}]""", "invalid JSON body: expected a JSON object")]
    [InlineData("""{"name":"a\u0000b"}""", "name must not contain \\u0000")]
    [InlineData("""{"name":"a","metadata":{"n":1e1000000}}""", "cannot be stored")]
    public async Task Create_WithBadBody_Is400WithTheReason_AndStoresNothing(string body, string reason)
    {
        var response = await Http.PostAsync("/tasks", Json(body), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(response)).GetProperty("error").GetString()!.ShouldContain(reason);
        (await BodyAsync(await Http.GetAsync("/tasks", Ct))).GetProperty("total").GetInt64().ShouldBe(0);
    }

    /// <summary>
    /// No workflow coordinator runs yet: a task that depends on others is refused (it was stored, and no one ever started
    /// it), and the original's workflow, job and federated-learning routes answer 501 with the reason (an empty 404).
    /// </summary>
    [Theory]
    [InlineData("POST", "/tasks", """{"name":"b","workflow_id":"w","depends_on":["a"],"run_if":"success"}""", "depends_on: workflows are not implemented yet")]
    [InlineData("POST", "/workflows", """{"tasks":[{"name":"a"}]}""", "workflows are not implemented yet")]
    [InlineData("POST", "/jobs", """{"name":"j","tasks":[{"name":"a"}]}""", "jobs are not implemented yet")]
    [InlineData("GET", "/jobs", null, "jobs are not implemented yet")]
    [InlineData("POST", "/jobs/j1/start", null, "jobs are not implemented yet")]
    [InlineData("GET", "/fl/rounds/r1/complete", null, "federated learning is not implemented yet")]
    public async Task WhatIsNotBuiltYet_Is501WithTheReason_AndStoresNothing(string method, string path, string? body, string reason)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = body is null ? null : Json(body) };
        var response = await Http.SendAsync(request, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.NotImplemented);
        (await BodyAsync(response)).GetProperty("error").GetString().ShouldBe(reason);
        (await BodyAsync(await Http.GetAsync("/tasks", Ct))).GetProperty("total").GetInt64().ShouldBe(0);
    }

    /// <summary>
    /// The monitoring profile is the original's Go struct (spec §2.1): GET and the start message carry all ten keys,
    /// missing or null ones with their zero values (our proplet and the Rust one refuse a profile without them);
    /// unknown keys are dropped, keys match case-insensitively.
    /// </summary>
    [Fact]
    public async Task Create_WithAPartialMonitoringProfile_StoresAllItsKeys()
    {
        var id = await CreateAsync("""{"name":"add","monitoring_profile":{"Enabled":true,"interval":5,"collect_cpu":null,"extra":"x"}}""");

        var profile = (await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct))).GetProperty("monitoring_profile");

        profile.GetRawText().ShouldBe("""
            {"enabled":true,"interval":5,"collect_cpu":false,"collect_memory":false,"collect_disk_io":false,"collect_threads":false,"collect_file_descriptors":false,"export_to_mqtt":false,"retain_history":false,"history_size":0}
            """);
    }

    [Theory]
    [InlineData("""{"name":"a","monitoring_profile":{"interval":"10s"}}""", "monitoring_profile.interval must be a non-negative integer")]
    [InlineData("""{"name":"a","monitoring_profile":{"interval":1.5}}""", "monitoring_profile.interval must be a non-negative integer")]
    [InlineData("""{"name":"a","monitoring_profile":{"history_size":-1}}""", "monitoring_profile.history_size must be a non-negative integer")]
    [InlineData("""{"name":"a","monitoring_profile":{"enabled":"yes"}}""", "monitoring_profile.enabled must be a boolean")]
    [InlineData("""{"name":"a","monitoring_profile":[1]}""", "monitoring_profile must be a JSON object")]
    public async Task Create_WithAMistypedMonitoringProfile_Is400(string body, string reason)
    {
        var response = await Http.PostAsync("/tasks", Json(body), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(response)).GetProperty("error").GetString()!.ShouldContain(reason);
    }

    /// <summary>
    /// <c>file</c> is read as Go's base64.StdEncoding reads it: the CR/LF line breaks of <c>base64</c>'s output are
    /// skipped and the module is stored canonically (GET's redaction shows its real last characters); spaces or tabs are
    /// a 400 (spec §1.3).
    /// </summary>
    [Fact]
    public async Task CreateAndUpdate_WithLineWrappedBase64_StoreItWithoutTheLineBreaks()
    {
        var wrapped = string.Join("\r\n", AddWasm.Chunk(16).Select(c => new string(c))) + "\n";
        var redacted = AddWasm[..10] + "<REDACTED>" + AddWasm[^10..];

        var id = await CreateAsync(JsonSerializer.Serialize(new { name = "add", file = wrapped }));
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct))).GetProperty("file").GetString().ShouldBe(redacted);

        var updated = await Http.PutAsync($"/tasks/{id}", Json(JsonSerializer.Serialize(new { file = "AGFzbQEAAAA=\r\n" })), Ct);
        updated.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await BodyAsync(updated)).GetProperty("file").GetString().ShouldBe("AGFzbQEAAAA=");
        // Unused bits of the last quantum are written as zero, as the original's re-encoding writes them.
        (await BodyAsync(await Http.PutAsync($"/tasks/{id}", Json("""{"file":"QR=="}"""), Ct))).GetProperty("file").GetString().ShouldBe("QQ==");
    }

    [Theory]
    [InlineData("AGFz bQEA")]
    [InlineData("AGFz\tbQEA")]
    public async Task CreateAndUpdate_WithSpacesOrTabsInBase64_Are400(string file)
    {
        var body = JsonSerializer.Serialize(new { name = "a", file });
        var created = await Http.PostAsync("/tasks", Json(body), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(created)).GetProperty("error").GetString()!.ShouldContain("base64");

        var id = await CreateAsync();
        var updated = await Http.PutAsync($"/tasks/{id}", Json(body), Ct);
        updated.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct))).TryGetProperty("file", out _).ShouldBeFalse();
    }

    /// <summary>A JSON <c>null</c> in a bool, number or time field is no value, as in Go's decoding (it was a 400).</summary>
    [Fact]
    public async Task CreateAndUpdate_WithNullInBoolNumberOrTimeFields_TreatItAsAbsent()
    {
        var response = await Http.PostAsync("/tasks", Json("""
            {"name":"add","daemon":null,"latent":null,"encrypted":null,"broadcast":null,"is_recurring":null,"priority":null,
             "state":null,"start_time":null,"finish_time":null,"created_at":null,"updated_at":null,"next_run":null}
            """), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.Created);
        var created = await BodyAsync(response);
        created.GetProperty("daemon").GetBoolean().ShouldBeFalse();
        created.GetProperty("priority").GetInt32().ShouldBe(50);
        var id = created.GetProperty("id").GetString();

        var updated = await Http.PutAsync($"/tasks/{id}", Json("""{"name":"renamed","priority":null,"is_recurring":null,"start_time":null}"""), Ct);

        updated.StatusCode.ShouldBe(HttpStatusCode.OK);
        var task = await BodyAsync(updated);
        task.GetProperty("name").GetString().ShouldBe("renamed");
        task.GetProperty("priority").GetInt32().ShouldBe(50);
        (await Http.PostAsync("/tasks", Json("""{"name":"a","daemon":"yes"}"""), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PostAsync("/tasks", Json("""{"name":"a","priority":true}"""), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PostAsync("/tasks", Json("""{"name":"a","priority":"70"}"""), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest); // as Go's decoding
    }

    /// <summary>
    /// The 1 MiB metadata limit measures the metadata as the original serialises it (compact UTF-8 JSON): multi-byte
    /// text under 1 Mi characters but over 1 MiB is refused, pretty-printed metadata under 1 MiB compact is taken.
    /// </summary>
    [Fact]
    public async Task Create_MetadataLimit_CountsUtf8BytesOfTheCompactJson()
    {
        var multiByte = "{\"text\":\"" + new string('é', 600_000) + "\"}"; // 600,000 characters, 1,200,011 bytes
        var indent = new string(' ', 200);
        var pretty = "{" + string.Join(",", Enumerable.Range(0, 8_000).Select(i => $"\n{indent}\"k{i}\" : {i}")) + "}"; // ~1.7 M characters, ~100 kB compact

        var refused = await Http.PostAsync("/tasks", Json("{\"name\":\"a\",\"metadata\":" + multiByte + "}"), Ct);
        refused.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(refused)).GetProperty("error").GetString()!.ShouldContain("metadata is larger than 1 MiB");
        (await Http.PostAsync("/tasks", Json("{\"name\":\"a\",\"metadata\":" + pretty + "}"), Ct)).StatusCode.ShouldBe(HttpStatusCode.Created);

        var id = await CreateAsync();
        (await Http.PutAsync($"/tasks/{id}", Json("{\"metadata\":" + multiByte + "}"), Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.PutAsync($"/tasks/{id}", Json("{\"metadata\":" + pretty + "}"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Create_WithoutJsonContentType_Is400()
    {
        var response = await Http.PostAsync("/tasks", new StringContent("""{"name":"a"}""", Encoding.UTF8, "text/plain"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(response)).GetProperty("error").GetString().ShouldBe("unsupported content type");
    }

    [Fact]
    public async Task List_PagesAndFiltersByMetadata_AndChecksItsParameters()
    {
        for (var i = 0; i < 3; i++)
        {
            var team = i == 1 ? "core" : "edge";
            await CreateAsync($$$"""{"name":"t{{{i}}}","metadata":{"team":"{{{team}}}"}}""");
        }

        var page = await BodyAsync(await Http.GetAsync("/tasks?offset=1&limit=1", Ct));
        page.GetProperty("offset").GetInt64().ShouldBe(1);
        page.GetProperty("limit").GetInt64().ShouldBe(1);
        page.GetProperty("total").GetInt64().ShouldBe(3);
        page.GetProperty("tasks")[0].GetProperty("name").GetString().ShouldBe("t1");

        var edge = await BodyAsync(await Http.GetAsync("/tasks?metadata=" + Uri.EscapeDataString("""{"team":"edge"}"""), Ct));
        edge.GetProperty("total").GetInt64().ShouldBe(2);

        // {} and null filter nothing, as the original: a task without metadata is listed too (containment of {} left it out).
        await CreateAsync("""{"name":"bare"}""");
        (await BodyAsync(await Http.GetAsync("/tasks?metadata=%7B%7D", Ct))).GetProperty("total").GetInt64().ShouldBe(4);
        (await BodyAsync(await Http.GetAsync("/tasks?metadata=null", Ct))).GetProperty("total").GetInt64().ShouldBe(4);

        (await Http.GetAsync("/tasks?limit=0", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync("/tasks?limit=101", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync("/tasks?offset=-1", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync("/tasks?metadata=[1]", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync("/tasks?metadata={}&metadata={}", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Get_WithBadOrUnknownId_Is400Or404()
    {
        var bad = await Http.GetAsync("/tasks/not-a-uuid", Ct);
        bad.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(bad)).GetProperty("error").GetString().ShouldBe("invalid query parameters");

        var unknown = await Http.GetAsync($"/tasks/{Guid.NewGuid()}", Ct);
        unknown.StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await BodyAsync(unknown)).GetProperty("error").GetString().ShouldBe("task not found");
        (await Http.PostAsync($"/tasks/{Guid.NewGuid()}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task StartAndStop_AreIdempotent_AndGuarded()
    {
        var id = await CreateAsync();

        (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.Conflict);
        var start = await Http.PostAsync($"/tasks/{id}/start", null, Ct);
        start.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await BodyAsync(start)).GetProperty("started").GetBoolean().ShouldBeTrue();
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await StateAsync(id)).ShouldBe(1);

        var stop = await Http.PostAsync($"/tasks/{id}/stop", null, Ct);
        (await BodyAsync(stop)).GetProperty("stopped").GetBoolean().ShouldBeTrue();
        (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await StateAsync(id)).ShouldBe(6);

        var history = await BodyAsync(await Http.GetAsync($"/tasks/{id}/history", Ct));
        history.EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.stopped.v1"]);
    }

    [Fact]
    public async Task Update_AppliesTheOriginalsFieldRules_AndKeepsTheSchedule()
    {
        var id = await CreateAsync("""{"name":"add","priority":10,"schedule":"*/5 * * * *","inputs":["1"]}""");

        var response = await Http.PutAsync($"/tasks/{id}", Json("""{"name":"renamed","priority":0,"image_url":"ignored","inputs":[]}"""), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var task = await BodyAsync(response);
        task.GetProperty("name").GetString().ShouldBe("renamed");
        task.GetProperty("priority").GetInt32().ShouldBe(10);
        task.TryGetProperty("image_url", out _).ShouldBeFalse();
        task.TryGetProperty("inputs", out _).ShouldBeFalse();
        task.GetProperty("schedule").GetString().ShouldBe("*/5 * * * *");
        (await Http.PutAsync($"/tasks/{Guid.NewGuid()}", Json("""{"name":"x"}"""), Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>Spec §2.6: <c>"schedule": ""</c> clears the schedule and is_recurring; the timezone stays (it became UTC).</summary>
    [Fact]
    public async Task Update_ClearingTheSchedule_KeepsTheTimezone()
    {
        var id = await CreateAsync("""{"name":"add","schedule":"*/5 * * * *","is_recurring":true,"timezone":"Europe/Paris"}""");

        var response = await Http.PutAsync($"/tasks/{id}", Json("""{"schedule":"","is_recurring":true}"""), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var task = await BodyAsync(response);
        task.GetProperty("timezone").GetString().ShouldBe("Europe/Paris");
        task.TryGetProperty("schedule", out _).ShouldBeFalse();
        task.TryGetProperty("is_recurring", out _).ShouldBeFalse();
    }

    /// <summary>A PUT with a new schedule and no timezone keeps the stored zone (the original sets "UTC", as a PUT
    /// without schedule cleared the schedule); <c>"timezone": ""</c> still means UTC.</summary>
    [Fact]
    public async Task Update_WithANewScheduleAndNoTimezone_KeepsTheTimezone()
    {
        var id = await CreateAsync("""{"name":"add","schedule":"*/5 * * * *","is_recurring":true,"timezone":"Europe/Paris"}""");

        var kept = await BodyAsync(await Http.PutAsync($"/tasks/{id}", Json("""{"schedule":"0 8 * * *","is_recurring":true}"""), Ct));
        var utc = await BodyAsync(await Http.PutAsync($"/tasks/{id}", Json("""{"schedule":"0 9 * * *","timezone":""}"""), Ct));

        kept.GetProperty("schedule").GetString().ShouldBe("0 8 * * *");
        kept.GetProperty("timezone").GetString().ShouldBe("Europe/Paris");
        utc.GetProperty("schedule").GetString().ShouldBe("0 9 * * *");
        utc.GetProperty("timezone").GetString().ShouldBe("UTC");
    }

    /// <summary>A timezone this host cannot find is a 400 on a create and on a PUT that applies it (the original computes
    /// in UTC instead, silently); nothing is stored.</summary>
    [Theory]
    [InlineData("Nowhere/Zone")]
    [InlineData("Europe/Pariss")]
    public async Task CreateAndUpdate_WithAnUnknownTimezone_Are400_AndStoreNothing(string timezone)
    {
        var created = await Http.PostAsync("/tasks", Json(JsonSerializer.Serialize(new { name = "zoned", schedule = "0 8 * * *", timezone })), Ct);
        var id = await CreateAsync("""{"name":"add","schedule":"*/5 * * * *","timezone":"Europe/Paris"}""");
        var updated = await Http.PutAsync($"/tasks/{id}", Json(JsonSerializer.Serialize(new { schedule = "0 8 * * *", timezone })), Ct);

        created.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(created)).GetProperty("error").GetString().ShouldBe($"invalid timezone: {timezone}");
        updated.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(updated)).GetProperty("error").GetString().ShouldBe($"invalid timezone: {timezone}");
        (await BodyAsync(await Http.GetAsync("/tasks", Ct))).GetProperty("total").GetInt64().ShouldBe(1);
        var task = await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct));
        task.GetProperty("schedule").GetString().ShouldBe("*/5 * * * *");
        task.GetProperty("timezone").GetString().ShouldBe("Europe/Paris");
    }

    /// <summary>Spec §1.3 and §4.2: a schedule the original's cron parser refuses is a 400 on a create and on a PUT (the
    /// original: 500); it was stored as sent. What it takes is stored.</summary>
    [Theory]
    [InlineData("x", false)]
    [InlineData("* * * *", false)]
    [InlineData("* * * * * *", false)]
    [InlineData("@daily", false)]
    [InlineData("@every 1s", false)]
    [InlineData("60 * * * *", false)]
    [InlineData("* 24 * * *", false)]
    [InlineData("* * 0 * *", false)]
    [InlineData("* * * 13 *", false)]
    [InlineData("* * * * 7", false)]
    [InlineData("5-1 * * * *", false)]
    [InlineData("*/0 * * * *", false)]
    [InlineData("-1 * * * *", false)]
    [InlineData("* * L * *", false)]
    [InlineData("* * * * MON#2", false)]
    [InlineData("CRON_TZ=Nowhere/Zone * * * * *", false)]
    [InlineData("*/5 * * * *", true)]
    [InlineData("0,30 9-17/2 ? JAN-mar sun,SAT", true)]
    [InlineData("5/15  0  1-31  12  0-6", true)]
    [InlineData("CRON_TZ=Europe/Paris 0 8 * * 1-5", true)]
    [InlineData("TZ=UTC 0 0 1 1 *", true)]
    // robfig v3 parser.go, checked against its source: getRange reads nothing after a leading * or ? ("-x" ignored),
    // mustParseInt is strconv.Atoi (a '+' sign, 64 bits), getField drops empty list items (strings.FieldsFunc), and
    // Parse cuts the zone at the first ' ' (a tab stays in the zone name) only when the spec starts with the prefix.
    [InlineData("*-5 * * * *", true)]
    [InlineData("?-x/10 * * * *", true)]
    [InlineData("+5 * * * *", true)]
    [InlineData("1-+5/+2 * * * *", true)]
    [InlineData("*/99999999999 * * * *", true)]
    [InlineData("0,,30 * * * *", true)]
    [InlineData("++5 * * * *", false)]
    [InlineData("*/-0 * * * *", false)]
    [InlineData("5-*-1 * * * *", false)]
    [InlineData("CRON_TZ=Local 0 * * * *", true)]
    [InlineData("CRON_TZ= 0 * * * *", true)]
    [InlineData(" TZ=UTC 0 * * * *", false)]
    [InlineData("TZ=UTC\t0 * * * *", false)]
    [InlineData("TZ=UTC\t0\t*\t*\t*\t*", false)]
    public async Task CreateAndUpdate_WithASchedule_TakeOnlyWhatTheOriginalsCronParserTakes(string schedule, bool valid)
    {
        var body = JsonSerializer.Serialize(new { name = "add", schedule, is_recurring = true });
        var created = await Http.PostAsync("/tasks", Json(body), Ct);
        var id = await CreateAsync();
        var updated = await Http.PutAsync($"/tasks/{id}", Json(JsonSerializer.Serialize(new { schedule })), Ct);

        created.StatusCode.ShouldBe(valid ? HttpStatusCode.Created : HttpStatusCode.BadRequest, await created.Content.ReadAsStringAsync(Ct));
        updated.StatusCode.ShouldBe(valid ? HttpStatusCode.OK : HttpStatusCode.BadRequest, await updated.Content.ReadAsStringAsync(Ct));
        if (valid)
        {
            (await BodyAsync(created)).GetProperty("schedule").GetString().ShouldBe(schedule);
            (await BodyAsync(updated)).GetProperty("schedule").GetString().ShouldBe(schedule);
        }
        else
        {
            (await BodyAsync(created)).GetProperty("error").GetString().ShouldBe("invalid cron expression");
            (await BodyAsync(updated)).GetProperty("error").GetString().ShouldBe("invalid cron expression");
            (await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct))).TryGetProperty("schedule", out _).ShouldBeFalse();
        }
    }

    /// <summary>A PUT's applied fields are checked as a create's are (the original: bad JSON → 400); nothing is stored.</summary>
    [Theory]
    [InlineData("""{"metadata":[1]}""", "metadata must be a JSON object")]
    [InlineData("""{"metadata":"x"}""", "metadata must be a JSON object")]
    [InlineData("""{"file":"not base64!"}""", "base64")]
    [InlineData("""{"priority":101}""", "priority must be between 0 and 100")]
    [InlineData("""{"finish_time":"soon"}""", "invalid JSON body")]
    public async Task Update_WithBadBody_Is400_AndChangesNothing(string body, string reason)
    {
        var id = await CreateAsync("""{"name":"add","metadata":{"team":"edge"}}""");

        var response = await Http.PutAsync($"/tasks/{id}", Json(body), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(response)).GetProperty("error").GetString()!.ShouldContain(reason);
        var task = await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct));
        task.GetProperty("metadata").GetProperty("team").GetString().ShouldBe("edge");
        task.TryGetProperty("file", out _).ShouldBeFalse();
    }

    /// <summary>Spec §2.6: <c>"inputs": null</c> on a PUT clears the inputs (a missing key keeps them).</summary>
    [Fact]
    public async Task Update_WithNullInputs_ClearsThem()
    {
        var id = await CreateAsync("""{"name":"add","inputs":["1","2"]}""");

        (await BodyAsync(await Http.PutAsync($"/tasks/{id}", Json("""{"name":"kept"}"""), Ct))).GetProperty("inputs").GetArrayLength().ShouldBe(2);
        var cleared = await BodyAsync(await Http.PutAsync($"/tasks/{id}", Json("""{"inputs":null}"""), Ct));

        cleared.TryGetProperty("inputs", out _).ShouldBeFalse();
    }

    /// <summary>
    /// Concurrent PUTs of different fields all take effect: each merges from the spec it read, and one that finds the
    /// task changed since is merged again from the new spec (before, the last to commit undid the others).
    /// </summary>
    [Fact]
    public async Task ConcurrentUpdatesOfDifferentFields_AllTakeEffect()
    {
        for (var round = 0; round < 5; round++)
        {
            var id = await CreateAsync();
            var bodies = new[]
            {
                """{"name":"renamed"}""", """{"priority":7}""", """{"metadata":{"k":"v"}}""", """{"inputs":["1","2"]}""",
                """{"schedule":"*/5 * * * *"}""", """{"file":"AGFzbQEAAAA="}""",
            };

            var responses = await Task.WhenAll(bodies.Select(b => Http.PutAsync($"/tasks/{id}", Json(b), Ct)));

            responses.ShouldAllBe(r => r.StatusCode == HttpStatusCode.OK);
            var task = await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct));
            task.GetProperty("name").GetString().ShouldBe("renamed");
            task.GetProperty("priority").GetInt32().ShouldBe(7);
            task.GetProperty("metadata").GetProperty("k").GetString().ShouldBe("v");
            task.GetProperty("inputs").GetArrayLength().ShouldBe(2);
            task.GetProperty("schedule").GetString().ShouldBe("*/5 * * * *");
            task.GetProperty("file").GetString().ShouldBe("AGFzbQEAAAA=");
        }
    }

    /// <summary>A <c>null</c> in <c>cli_args</c> or <c>env</c> is stored as "" (the original's Go decoding), so the task
    /// can run (the proplet refuses a null).</summary>
    [Fact]
    public async Task Create_WithNullsInCliArgsOrEnv_StoresEmptyStrings()
    {
        var id = await CreateAsync("""{"name":"add","cli_args":["--x",null],"env":{"K":null,"L":"1"}}""");

        var task = await BodyAsync(await Http.GetAsync($"/tasks/{id}", Ct));
        task.GetProperty("cli_args").EnumerateArray().Select(a => a.GetString()).ShouldBe(["--x", ""]);
        task.GetProperty("env").GetProperty("K").GetString().ShouldBe("");
        task.GetProperty("env").GetProperty("L").GetString().ShouldBe("1");
    }

    /// <summary>List filters PostgreSQL cannot take (a <c>\u0000</c>, a lone surrogate, a huge number) are a 400, not a 500.</summary>
    [Theory]
    [InlineData("name=%00")]
    [InlineData("metadata=%7B%22a%22:%22%5Cu0000%22%7D")]
    [InlineData("metadata=%7B%22n%22:1e1000000%7D")]
    [InlineData("metadata=%7B%22a%22:%22%5Cudc00%22%7D")]
    public async Task List_WithAValuePostgresCannotTake_Is400(string query)
    {
        var response = await Http.GetAsync("/tasks?" + query, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
    }

    /// <summary>The history redacts the module as GET does (it held the whole module in every create and update).</summary>
    [Fact]
    public async Task History_RedactsTheModule()
    {
        var id = await CreateAsync($$"""{"name":"add","file":"{{AddWasm}}"}""");
        (await Http.PutAsync($"/tasks/{id}", Json($$"""{"file":"{{AddWasm}}AA=="}"""), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        var history = await Http.GetStringAsync($"/tasks/{id}/history", Ct);

        history.ShouldNotContain(AddWasm);
        var files = JsonDocument.Parse(history).RootElement.EnumerateArray().Take(2).Select(e => e.GetProperty("data").GetProperty("spec").GetProperty("file").GetString()).ToList();
        files.ShouldBe([AddWasm[..10] + "<REDACTED>" + AddWasm[^10..], AddWasm[..10] + "<REDACTED>" + (AddWasm + "AA==")[^10..]]);
    }

    /// <summary>
    /// The history comes in pages (a recurring task gains events with every run and was read whole): from a version, or
    /// the last events, with the stream's version in a header and the neighbouring pages as links.
    /// </summary>
    [Fact]
    public async Task History_IsPaged_WithLinksAndTheStreamsVersion()
    {
        var id = await CreateAsync();
        for (var i = 0; i < 3; i++)
        {
            (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        }

        async Task<(string Versions, string? Link, string? Version)> PageAsync(string query)
        {
            var response = await Http.GetAsync($"/tasks/{id}/history{query}", Ct);
            response.StatusCode.ShouldBe(HttpStatusCode.OK);
            var versions = string.Join(",", (await BodyAsync(response)).EnumerateArray().Select(e => e.GetProperty("version").GetInt64()));
            return (versions, response.Headers.TryGetValues("Link", out var link) ? string.Join(", ", link) : null,
                response.Headers.GetValues("Propeller-Stream-Version").Single());
        }

        (await PageAsync("")).ShouldBe(("1,2,3,4,5,6,7", null, "7"));
        (await PageAsync("?from=3&limit=3")).ShouldBe(("3,4,5", $"</tasks/{id}/history?from=1&limit=2>; rel=\"prev\", </tasks/{id}/history?from=6&limit=3>; rel=\"next\"", "7"));
        (await PageAsync("?limit=4")).ShouldBe(("1,2,3,4", $"</tasks/{id}/history?from=5&limit=4>; rel=\"next\"", "7"));
        (await PageAsync("?last=2")).ShouldBe(("6,7", $"</tasks/{id}/history?from=4&limit=2>; rel=\"prev\"", "7"));
        (await PageAsync("?last=1000")).Versions.ShouldBe("1,2,3,4,5,6,7");
        (await PageAsync("?from=100&limit=5")).ShouldBe(("", $"</tasks/{id}/history?from=3&limit=5>; rel=\"prev\"", "7"));

        foreach (var bad in new[] { "?from=0", "?from=x", "?limit=0", "?limit=1001", "?last=0", "?last=-1", "?last=2&from=1", "?last=2&limit=2", "?from=" })
        {
            var response = await Http.GetAsync($"/tasks/{id}/history{bad}", Ct);
            response.StatusCode.ShouldBe(HttpStatusCode.BadRequest, bad);
            (await BodyAsync(response)).GetProperty("error").GetString().ShouldNotBeNullOrEmpty();
        }

        (await Http.GetAsync($"/tasks/{Guid.NewGuid()}/history?last=5", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Delete_Is204_ThenTheTaskIsGone_AndAuditedInItsHistory()
    {
        var id = await CreateAsync();

        (await Http.DeleteAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        (await Http.GetAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.DeleteAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        var history = await BodyAsync(await Http.GetAsync($"/tasks/{id}/history", Ct));
        history.EnumerateArray().Last().GetProperty("type").GetString().ShouldBe("task.deleted.v1");

        // Replayed, it is there before its deletion and gone from it on, as GET says (it was the last state, as if alive).
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?version=1", Ct))).GetProperty("name").GetString().ShouldBe("add");
        var deletedAt = history.EnumerateArray().Last().GetProperty("timestamp").GetString()!;
        foreach (var query in new[] { "version=2", "version=9", $"at={Uri.EscapeDataString(deletedAt)}" })
        {
            var replayed = await Http.GetAsync($"/tasks/{id}?{query}", Ct);
            replayed.StatusCode.ShouldBe(HttpStatusCode.NotFound, query);
            (await BodyAsync(replayed)).GetProperty("error").GetString().ShouldBe("task was deleted at that point");
        }
    }

    [Fact]
    public async Task History_CarriesTheUserAndCorrelation_AndReplayGivesEarlierStates()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/tasks") { Content = Json("""{"name":"audited"}""") };
        request.Headers.Add("X-User-Id", "alice");
        request.Headers.Add("X-Correlation-Id", "corr-42");
        var id = (await BodyAsync(await Http.SendAsync(request, Ct))).GetProperty("id").GetString();
        await Http.PostAsync($"/tasks/{id}/start", null, Ct);

        var history = (await BodyAsync(await Http.GetAsync($"/tasks/{id}/history", Ct))).EnumerateArray().ToList();
        history[0].GetProperty("user_id").GetString().ShouldBe("alice");
        history[0].GetProperty("correlation_id").GetString().ShouldBe("corr-42");
        history[0].GetProperty("version").GetInt64().ShouldBe(1);

        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?version=1", Ct))).GetProperty("state").GetInt32().ShouldBe(0);
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?version=2", Ct))).GetProperty("state").GetInt32().ShouldBe(1);
        (await Http.GetStringAsync($"/tasks/{id}?version=2", Ct)).ShouldBe(await Http.GetStringAsync($"/tasks/{id}", Ct)); // the current version
        var past = await Http.GetAsync($"/tasks/{id}?version=9", Ct); // past the end: was the current state, as if version 9
        past.StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await BodyAsync(past)).GetProperty("error").GetString().ShouldBe("task has no version 9 (its latest is 2)");
        var last = await Http.GetAsync($"/tasks/{id}?version={long.MaxValue}", Ct); // the loader's "no bound": was 200, the current state
        last.StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await BodyAsync(last)).GetProperty("error").GetString().ShouldBe($"task has no version {long.MaxValue} (its latest is 2)");
        var createdAt = history[0].GetProperty("timestamp").GetString();
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?at={Uri.EscapeDataString(createdAt!)}", Ct))).GetProperty("state").GetInt32().ShouldBe(0);
        (await Http.GetAsync($"/tasks/{id}?version=zero", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync($"/tasks/{id}?at=yesterday", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);

        // Only RFC 3339's date-time: a date alone, a time alone or no offset would be read in a zone nobody named.
        foreach (var loose in new[] { "2020-01-01", "12:00", "2020-01-01T00:00:00", "2020-01-01 00:00", "2020-1-1T00:00:00Z" })
        {
            var refused = await Http.GetAsync($"/tasks/{id}?at={Uri.EscapeDataString(loose)}", Ct);
            refused.StatusCode.ShouldBe(HttpStatusCode.BadRequest, loose);
            (await BodyAsync(refused)).GetProperty("error").GetString()!.ShouldStartWith("at must be an RFC 3339 time");
        }

        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?at={Uri.EscapeDataString(createdAt!.Replace('T', ' '))}", Ct))).GetProperty("state").GetInt32().ShouldBe(0);
        // RFC 3339 allows a lowercase t and z too (Go refuses them; docs/compatibility.md).
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?at={Uri.EscapeDataString(createdAt!.Replace('T', 't').Replace('Z', 'z'))}", Ct))).GetProperty("state").GetInt32().ShouldBe(0);

        // An offset's "+" sent unencoded (it reads as a space in a query string): was refused.
        var plus = DateTimeOffset.Parse(createdAt!, System.Globalization.CultureInfo.InvariantCulture).ToOffset(TimeSpan.FromHours(1)).ToString("yyyy-MM-dd'T'HH:mm:ss.fffffffzzz", System.Globalization.CultureInfo.InvariantCulture);
        (await BodyAsync(await Http.GetAsync($"/tasks/{id}?at={plus}", Ct))).GetProperty("state").GetInt32().ShouldBe(0);
        var both = await Http.GetAsync($"/tasks/{id}?version=1&at={Uri.EscapeDataString(createdAt!)}", Ct);
        both.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(both)).GetProperty("error").GetString().ShouldBe("version and at cannot be combined");
    }

    /// <summary>A time with an offset other than Z is that instant (Npgsql writes a timestamptz from UTC only: it was a 500).</summary>
    [Theory]
    [InlineData("+05:00", 5)]
    [InlineData("-01:00", -1)]
    public async Task Replay_AtATimeWithAnOffset_IsTheStateAtThatInstant(string offset, int hours)
    {
        var id = await CreateAsync();
        var history = (await BodyAsync(await Http.GetAsync($"/tasks/{id}/history", Ct))).EnumerateArray().ToList();
        var createdAt = history[0].GetProperty("timestamp").GetDateTimeOffset().AddHours(hours);
        var at = createdAt.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff", CultureInfo.InvariantCulture) + offset;

        var response = await Http.GetAsync($"/tasks/{id}?at={Uri.EscapeDataString(at)}", Ct);

        var body = await response.Content.ReadAsStringAsync(Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK, body + "\n" + _server.Warnings);
        JsonDocument.Parse(body).RootElement.GetProperty("name").GetString().ShouldBe("add");
        (await Http.GetAsync($"/tasks/{id}?at={Uri.EscapeDataString("2000-01-01T00:00:00" + offset)}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>A route or method the API does not have is refused with {"error"} as every other refusal is (it was an
    /// empty body).</summary>
    [Theory]
    [InlineData("GET", "/nothing", 404, "not found")]
    [InlineData("POST", "/tasks/{id}/nothing", 404, "not found")]
    [InlineData("PATCH", "/tasks/{id}", 405, "method not allowed")]
    [InlineData("POST", "/proplets", 405, "method not allowed")]
    public async Task AnUnknownRouteOrMethod_IsRefusedWithAnErrorBody(string method, string path, int status, string error)
    {
        var id = await CreateAsync();

        var response = await Http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path.Replace("{id}", id, StringComparison.Ordinal)), Ct);

        ((int)response.StatusCode).ShouldBe(status);
        (await BodyAsync(response)).GetProperty("error").GetString().ShouldBe(error);
    }

    [Fact]
    public async Task Results_WithoutResults_Is200WithAnEmptyBody()
    {
        var response = await Http.GetAsync($"/tasks/{await CreateAsync()}/results", Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await response.Content.ReadAsStringAsync(Ct)).ShouldBeEmpty();
    }

    [Fact]
    public async Task Health_LiveAndReady()
    {
        (await Http.GetFromJsonAsync<JsonElement>("/health", Ct)).GetProperty("status").GetString().ShouldBe("pass");
        (await Http.GetAsync("/health/live", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var ready = await Http.GetFromJsonAsync<JsonElement>("/health/ready", Ct);
        ready.GetProperty("checks").GetProperty("postgres").GetString().ShouldBe("pass");
        ready.GetProperty("checks").GetProperty("mqtt").GetString().ShouldBe("not configured");
    }

    [Fact]
    public async Task Metrics_CountRequestsPerOperation_AndCommittedEventsByType_InPrometheusText()
    {
        await CreateAsync();
        await Http.GetAsync("/tasks", Ct);

        var response = await Http.GetAsync("/metrics", Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);

        response.Content.Headers.ContentType!.MediaType.ShouldBe("text/plain");
        text.ShouldContain("# TYPE manager_api_request_count counter");
        text.ShouldContain("manager_api_request_count{method=\"create-task\"}");
        text.ShouldContain("manager_api_request_latency_microseconds_count{method=\"list-tasks\"}");
        text.ShouldContain("# TYPE manager_command_batch_size summary");
        text.ShouldContain("manager_command_batch_duration_seconds_count");
        text.ShouldContain("manager_command_queue_seconds_count");
        text.ShouldContain("# TYPE manager_events_committed counter");
        text.ShouldContain("manager_events_committed{type=\"task.created.v1\"}");
    }

    /// <summary>
    /// A node whose cache says the task ended (it stopped it) does not answer a long poll from that: another node has
    /// started the task again since, and the wait goes on for the new attempt.
    /// </summary>
    [Fact]
    public async Task LongPolling_OnANodeThatCachedAnEndedAttempt_WaitsForTheAttemptAnotherNodeStarted()
    {
        var id = await CreateAsync();
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK); // this node caches Interrupted

        await using (var other = await ManagerServer.StartAsync(Schema, null, dropSchema: false))
        {
            (await other.Client.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK); // attempt 2, waiting
        }

        var waited = await BodyAsync(await Http.GetAsync($"/tasks/{id}?wait=2s", Ct));
        waited.GetProperty("state").GetInt32().ShouldBe(1, "the new attempt waits for a proplet; the ended one is not the answer");
    }

    [Fact]
    public async Task LongPolling_OnANodeWhoseCachedStateIsStale_SeesAnotherNodesChangeQuickly()
    {
        var id = await CreateAsync();
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK); // this node caches Scheduled

        // A second manager on the same database stops the task: this node's cache still says Scheduled.
        await using (var other = await ManagerServer.StartAsync(Schema, null, dropSchema: false))
        {
            (await other.Client.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var waited = await BodyAsync(await Http.GetAsync($"/tasks/{id}?wait=20s", Ct));
        waited.GetProperty("state").GetInt32().ShouldBe(6);
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), "the view is read again soon, not at the end of the wait");
    }
    /// <summary>
    /// An unknown task is answered {"error":"task not found"} on every route, as the reading routes did: PUT, DELETE,
    /// start and stop answered the decider's "task &lt;id&gt; not found" (the id stays in the decider's reason).
    /// </summary>
    [Fact]
    public async Task AnUnknownTask_IsAnsweredTaskNotFound_OnEveryRoute()
    {
        var unknown = Guid.NewGuid();
        var answers = new[]
        {
            await Http.GetAsync($"/tasks/{unknown}", Ct),
            await Http.PutAsync($"/tasks/{unknown}", Json("""{"name":"x"}"""), Ct),
            await Http.DeleteAsync($"/tasks/{unknown}", Ct),
            await Http.PostAsync($"/tasks/{unknown}/start", null, Ct),
            await Http.PostAsync($"/tasks/{unknown}/stop", null, Ct),
            await Http.GetAsync($"/tasks/{unknown}/results", Ct),
            await Http.PostAsync($"/tasks/{unknown}/invoke", null, Ct),
        };

        foreach (var answer in answers)
        {
            answer.StatusCode.ShouldBe(HttpStatusCode.NotFound, answer.RequestMessage!.RequestUri!.ToString());
            (await BodyAsync(answer)).GetProperty("error").GetString().ShouldBe("task not found", $"{answer.RequestMessage.Method} {answer.RequestMessage.RequestUri}");
        }
    }

    /// <summary>
    /// A proplet_id longer than any id a proplet announces is a 400 naming the field: stored, a random one of more than
    /// ~2.7 KB broke PostgreSQL's btree row limit on the proplet column's index (54000), a 500 "internal error".
    /// </summary>
    [Fact]
    public async Task Create_WithAPropletIdLongerThanTheLimit_IsABadRequestNamingIt()
    {
        var random = new Random(45);
        var id = new string([.. Enumerable.Range(0, 10_000).Select(_ => (char)random.Next('!', '~' + 1))]);

        var refused = await Http.PostAsync("/tasks", Json(JsonSerializer.Serialize(new { name = "a", proplet_id = id })), Ct);

        refused.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(refused)).GetProperty("error").GetString()!.ShouldContain("proplet_id");
        var atTheLimit = await Http.PostAsync("/tasks", Json(JsonSerializer.Serialize(new { name = "a", proplet_id = id[..1024] })), Ct);
        atTheLimit.StatusCode.ShouldBe(HttpStatusCode.Created);

        // Counted in UTF-8 bytes, as PostgreSQL counts: 1,000 CJK characters are 3,000 bytes (a 500 when counted in
        // characters).
        var wide = new string([.. Enumerable.Range(0, 1000).Select(_ => (char)random.Next(0x4E00, 0x9FFF))]);
        var refusedWide = await Http.PostAsync("/tasks", Json(JsonSerializer.Serialize(new { name = "a", proplet_id = wide })), Ct);
        refusedWide.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await BodyAsync(refusedWide)).GetProperty("error").GetString().ShouldBe("proplet_id is longer than 1024 bytes (UTF-8)");
    }
}
