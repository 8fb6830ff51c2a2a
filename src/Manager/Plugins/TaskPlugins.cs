using Propeller.Application.Plugins;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using Propeller.Manager.Http;

namespace Propeller.Manager.Plugins;

/// <summary>
/// The plugin gate on the HTTP task routes (spec §7.5, §7.6, §7.9): authorize before a command, enrich a created task,
/// announce a started one. A deny answers 403 <c>{"error": reason}</c> (the original answered 500); every decision is
/// returned so it can be stored in the events' metadata. With no plugins nothing is loaded or called.
/// </summary>
internal sealed class TaskPlugins(IPluginGate gate, ITaskQueries queries)
{
    public bool Active => gate is not AllowAllPluginGate;

    public static string? UserOf(HttpRequest request) => request.Headers["X-User-Id"].FirstOrDefault() is { Length: > 0 } user ? user : null;

    /// <summary>Authorizes <paramref name="action"/> on a stored task (none when it does not exist: the command answers 404).</summary>
    public async Task<Gated> AuthorizeAsync(HttpRequest request, PluginAction action, TaskId id, CancellationToken cancellationToken)
    {
        if (!Active || await queries.GetAsync(id, cancellationToken) is not { } state || PluginTaskInfos.From(state) is not { } info)
        {
            return Gated.Allowed;
        }

        return await AuthorizeAsync(request, action, info, cancellationToken);
    }

    public async Task<Gated> AuthorizeAsync(HttpRequest request, PluginAction action, PluginTaskInfo task, CancellationToken cancellationToken)
    {
        if (!Active)
        {
            return Gated.Allowed;
        }

        var outcome = await gate.AuthorizeAsync(new PluginAuthContext(UserOf(request), action), task, cancellationToken);
        return new Gated(
            outcome.Allowed ? null : ApiResults.Error(StatusCodes.Status403Forbidden, outcome.Reason is { Length: > 0 } reason ? reason : "denied by plugin"),
            outcome.Decisions);
    }

    /// <summary>Applies the merged <c>enrich_task</c> answers to a new task (spec §7.6 rules).</summary>
    public async Task<(TaskSpec Spec, IReadOnlyList<PluginDecision> Decisions)> EnrichAsync(HttpRequest request, TaskSpec spec, CancellationToken cancellationToken)
    {
        if (!Active)
        {
            return (spec, []);
        }

        var outcome = await gate.EnrichAsync(new PluginAuthContext(UserOf(request), PluginAction.None), PluginTaskInfos.From("", spec), cancellationToken);
        if (outcome.Env is { Count: > 0 } env)
        {
            spec = spec with { Env = spec.Env.SetItems(env) };
        }

        if (outcome.Priority is { } priority)
        {
            spec = spec with { Priority = priority == 0 ? TaskSpec.DefaultPriority : priority };
        }

        if (outcome.Inputs is { Count: > 0 } inputs)
        {
            spec = spec with { Inputs = new EquatableArray<string>([.. spec.Inputs, .. inputs.Where(i => !spec.Inputs.Contains(i))]) };
        }

        if (outcome.ImageUrl is { Length: > 0 } imageUrl)
        {
            spec = spec with { ImageUrl = imageUrl };
        }

        return (spec, outcome.Decisions);
    }

    /// <summary>The <c>on_task_start</c> notification with the task as it was before the start.</summary>
    public void Started(PluginTaskInfo? before)
    {
        if (Active && before is not null)
        {
            gate.OnTaskStarted(before);
        }
    }

    /// <summary>The outcome of an authorization: <see cref="Denied"/> is the HTTP answer when a plugin said no.</summary>
    public sealed record Gated(IResult? Denied, IReadOnlyList<PluginDecision> Decisions)
    {
        public static Gated Allowed { get; } = new(null, []);

        public IReadOnlyDictionary<string, string>? Headers => PluginTaskInfos.Headers(Decisions);
    }
}
