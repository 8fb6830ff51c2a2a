using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Propeller.Application.Plugins;

namespace Propeller.Plugins.Abi;

/// <summary>
/// The JSON of spec §7.4–7.8, written by hand so the omission rules are exact: TaskInfo keeps <c>id</c> and <c>name</c>
/// always and drops every other key when empty, false or 0 (<c>created_at</c> when unset); AuthContext drops an empty
/// <c>user_id</c> and always has <c>action</c>.
/// </summary>
internal static class PluginJson
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string ActionName(PluginAction action) => action switch
    {
        PluginAction.Create => "create",
        PluginAction.Start => "start",
        PluginAction.Stop => "stop",
        PluginAction.Invoke => "invoke",
        PluginAction.Delete => "delete",
        PluginAction.Update => "update",
        _ => "",
    };

    /// <summary><c>{"context":AuthContext,"task":TaskInfo}</c> (authorize, enrich_task, on_before_proplet_select).</summary>
    public static byte[] ContextAndTask(PluginAuthContext context, PluginTaskInfo task, bool withAction) =>
        Write(w =>
        {
            w.WriteStartObject();
            WriteContext(w, context, withAction);
            w.WritePropertyName("task");
            WriteTask(w, task);
            w.WriteEndObject();
        });

    /// <summary><c>{"context","task","proplet":{"id","name","tags"?,"total_memory_bytes"?,"location"?}}</c>.</summary>
    public static byte[] Dispatch(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet) =>
        Write(w =>
        {
            w.WriteStartObject();
            WriteContext(w, context, withAction: false);
            w.WritePropertyName("task");
            WriteTask(w, task);
            w.WriteStartObject("proplet");
            w.WriteString("id", proplet.Id);
            w.WriteString("name", proplet.Name);
            if (proplet.Tags.Count > 0)
            {
                WriteStrings(w, "tags", proplet.Tags);
            }

            if (proplet.TotalMemoryBytes > 0)
            {
                w.WriteNumber("total_memory_bytes", proplet.TotalMemoryBytes);
            }

            if (!string.IsNullOrEmpty(proplet.Location))
            {
                w.WriteString("location", proplet.Location);
            }

            w.WriteEndObject();
            w.WriteEndObject();
        });

    /// <summary><c>{"task":TaskInfo}</c> (on_task_start).</summary>
    public static byte[] TaskEvent(PluginTaskInfo task) =>
        Write(w =>
        {
            w.WriteStartObject();
            w.WritePropertyName("task");
            WriteTask(w, task);
            w.WriteEndObject();
        });

    /// <summary><c>{"task":TaskInfo,"success"?:true,"error"?:string}</c> (on_task_complete; <c>result</c> is never filled).</summary>
    public static byte[] CompleteEvent(PluginTaskInfo task, bool success, string? error) =>
        Write(w =>
        {
            w.WriteStartObject();
            w.WritePropertyName("task");
            WriteTask(w, task);
            if (success)
            {
                w.WriteBoolean("success", true);
            }

            if (!string.IsNullOrEmpty(error))
            {
                w.WriteString("error", error);
            }

            w.WriteEndObject();
        });

    public static void WriteTask(Utf8JsonWriter w, PluginTaskInfo task)
    {
        w.WriteStartObject();
        w.WriteString("id", task.Id);
        w.WriteString("name", task.Name);
        WriteIfAny(w, "kind", task.Kind);
        WriteIfAny(w, "image_url", task.ImageUrl);
        if (task.Inputs.Count > 0)
        {
            WriteStrings(w, "inputs", task.Inputs);
        }

        if (task.CliArgs.Count > 0)
        {
            WriteStrings(w, "cli_args", task.CliArgs);
        }

        if (task.Env.Count > 0)
        {
            WriteMap(w, "env", task.Env);
        }

        WriteIfAny(w, "proplet_id", task.PropletId);
        if (task.Priority != 0)
        {
            w.WriteNumber("priority", task.Priority);
        }

        if (task.Daemon)
        {
            w.WriteBoolean("daemon", true);
        }

        if (task.Encrypted)
        {
            w.WriteBoolean("encrypted", true);
        }

        if (task.CreatedAt is { } created && created != default)
        {
            w.WriteString("created_at", created.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture));
        }

        w.WriteEndObject();
    }

    public static void WriteMap(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, string> map)
    {
        w.WriteStartObject(name);
        foreach (var (key, value) in map)
        {
            w.WriteString(key, value);
        }

        w.WriteEndObject();
    }

    public static void WriteStrings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var value in values)
        {
            w.WriteStringValue(value);
        }

        w.WriteEndArray();
    }

    public static byte[] Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            body(writer);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteContext(Utf8JsonWriter w, PluginAuthContext context, bool withAction)
    {
        w.WriteStartObject("context");
        WriteIfAny(w, "user_id", context.UserId);
        w.WriteString("action", withAction ? ActionName(context.Action) : "");
        w.WriteEndObject();
    }

    private static void WriteIfAny(Utf8JsonWriter w, string name, string? value)
    {
        if (!string.IsNullOrEmpty(value))
        {
            w.WriteString(name, value);
        }
    }
}
