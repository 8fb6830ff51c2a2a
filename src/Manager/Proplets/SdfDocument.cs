namespace Propeller.Manager.Proplets;

/// <summary>
/// The proplet's SDF (Semantic Definition Format) document (spec propeller-manager.md §6.7): static apart from the
/// title, which names the proplet.
/// </summary>
internal static class SdfDocument
{
    private static readonly string[] ResultStates = ["Completed", "Failed", "Skipped", "Interrupted"];

    public static Dictionary<string, object> For(string id, string name)
    {
        static Dictionary<string, object> Str() => new() { ["type"] = "string" };
        static Dictionary<string, object> Obj(Dictionary<string, object> properties, params string[] required)
        {
            var o = new Dictionary<string, object> { ["type"] = "object", ["properties"] = properties };
            if (required.Length > 0)
            {
                o["required"] = required;
            }

            return o;
        }

        static Dictionary<string, object> Arr() => new() { ["type"] = "array", ["items"] = Str() };
        static Dictionary<string, object> Ref(string to) => new() { ["sdfRef"] = "#/sdfData/" + to };

        var taskDispatch = Obj(
            new()
            {
                ["id"] = Str(),
                ["name"] = Str(),
                ["image_url"] = Str(),
                ["cli_args"] = Arr(),
                ["inputs"] = Arr(),
                ["env"] = new Dictionary<string, object> { ["type"] = "object", ["additionalProperties"] = Str() },
                ["daemon"] = new Dictionary<string, object> { ["type"] = "boolean" },
                ["encrypted"] = new Dictionary<string, object> { ["type"] = "boolean" },
                ["kbs_resource_path"] = Str(),
            },
            "id",
            "name");
        return new Dictionary<string, object>
        {
            ["info"] = new Dictionary<string, object>
            {
                ["title"] = $"Propeller Proplet: {name} ({id})",
                ["version"] = "1.0",
                ["license"] = "Apache-2.0",
            },
            ["sdfThing"] = new Dictionary<string, object>
            {
                ["Proplet"] = new Dictionary<string, object>
                {
                    ["description"] = "A Propeller edge worker that runs WebAssembly tasks",
                    ["sdfProperty"] = new Dictionary<string, object>
                    {
                        ["id"] = Str(),
                        ["name"] = Str(),
                        ["alive"] = new Dictionary<string, object> { ["type"] = "boolean" },
                        ["task_count"] = new Dictionary<string, object> { ["type"] = "integer", ["minimum"] = 0 },
                        ["metadata"] = Ref("PropletMetadata"),
                    },
                    ["sdfAction"] = new Dictionary<string, object>
                    {
                        ["start_task"] = new Dictionary<string, object> { ["sdfInputData"] = Ref("TaskDispatch") },
                        ["stop_task"] = new Dictionary<string, object> { ["sdfInputData"] = Ref("TaskStop") },
                    },
                    ["sdfEvent"] = new Dictionary<string, object>
                    {
                        ["heartbeat"] = new Dictionary<string, object> { ["sdfOutputData"] = Ref("HeartbeatPayload") },
                        ["task_result"] = new Dictionary<string, object> { ["sdfOutputData"] = Ref("TaskResult") },
                    },
                },
            },
            ["sdfData"] = new Dictionary<string, object>
            {
                ["PropletMetadata"] = Obj(new()
                {
                    ["description"] = Str(),
                    ["tags"] = Arr(),
                    ["location"] = Str(),
                    ["ip"] = Str(),
                    ["environment"] = Str(),
                    ["os"] = Str(),
                    ["hostname"] = Str(),
                    ["cpu_arch"] = Str(),
                    ["total_memory_bytes"] = new Dictionary<string, object> { ["type"] = "integer", ["minimum"] = 0 },
                    ["proplet_version"] = Str(),
                    ["wasm_runtime"] = Str(),
                }),
                ["TaskDispatch"] = taskDispatch,
                ["TaskStop"] = Obj(new() { ["id"] = Str() }, "id"),
                ["HeartbeatPayload"] = Obj(new() { ["proplet_id"] = Str(), ["status"] = Str() }),
                ["TaskResult"] = Obj(
                    new()
                    {
                        ["task_id"] = Str(),
                        ["proplet_id"] = Str(),
                        ["results"] = new Dictionary<string, object>(),
                        ["error"] = Str(),
                        ["state"] = new Dictionary<string, object> { ["type"] = "string", ["enum"] = ResultStates },
                    },
                    "task_id"),
            },
        };
    }
}
