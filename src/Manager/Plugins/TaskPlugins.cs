using Propeller.Application.Plugins;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using Propeller.Manager.Http;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Manager.Plugins;

/// <summary>
/// The plugin gate on the HTTP task routes (spec §7.5, §7.6, §7.9): authorize before a command, enrich a created task,
/// announce a started one. A deny answers 403 <c>{"error": reason}</c> (the original answered 500); every decision is
/// returned so it can be stored in the events' metadata. With no plugins nothing is loaded or called. On the Wolverine
/// pipeline the same calls run as handler middleware (<see cref="Wolverine.PluginGateMiddleware"/>), with the user from
/// the command's metadata.
/// </summary>
public sealed class TaskPlugins(IPluginGate gate, ITaskQueries queries)
{
    public bool Active => gate is not AllowAllPluginGate;

    public static string? UserOf(HttpRequest request) => request.Headers["X-User-Id"].FirstOrDefault() is { Length: > 0 } user ? user : null;

    /// <summary>Authorizes <paramref name="action"/> on a stored task (none when it does not exist: the command answers 404).</summary>
    public Task<Gated> AuthorizeAsync(HttpRequest request, PluginAction action, TaskId id, CancellationToken cancellationToken) =>
        AuthorizeAsync(UserOf(request), action, id, cancellationToken);

    /// <summary>Authorizes <paramref name="action"/> by <paramref name="user"/> on a stored task (none when it does not exist).</summary>
    public async Task<Gated> AuthorizeAsync(string? user, PluginAction action, TaskId id, CancellationToken cancellationToken)
    {
        if (!Active || await queries.GetAsync(id, cancellationToken) is not { } state || PluginTaskInfos.From(state) is not { } info)
        {
            return Gated.Allowed;
        }

        return await AuthorizeAsync(user, action, info, cancellationToken);
    }

    public Task<Gated> AuthorizeAsync(HttpRequest request, PluginAction action, PluginTaskInfo task, CancellationToken cancellationToken) =>
        AuthorizeAsync(UserOf(request), action, task, cancellationToken);

    public async Task<Gated> AuthorizeAsync(string? user, PluginAction action, PluginTaskInfo task, CancellationToken cancellationToken)
    {
        if (!Active)
        {
            return Gated.Allowed;
        }

        var outcome = await gate.AuthorizeAsync(new PluginAuthContext(user, action), task, cancellationToken);
        var reason = outcome.Allowed ? null : outcome.Reason is { Length: > 0 } given ? given : "denied by plugin";
        return new Gated(reason is null ? null : ApiResults.Error(StatusCodes.Status403Forbidden, reason), outcome.Decisions, reason);
    }

    /// <summary>Applies the merged <c>enrich_task</c> answers to a new task (spec §7.6 rules).</summary>
    public Task<(TaskSpec Spec, IReadOnlyList<PluginDecision> Decisions)> EnrichAsync(HttpRequest request, TaskSpec spec, CancellationToken cancellationToken) =>
        EnrichAsync(UserOf(request), spec, cancellationToken);

    public async Task<(TaskSpec Spec, IReadOnlyList<PluginDecision> Decisions)> EnrichAsync(string? user, TaskSpec spec, CancellationToken cancellationToken)
    {
        if (!Active)
        {
            return (spec, []);
        }

        var outcome = await gate.EnrichAsync(new PluginAuthContext(user, PluginAction.None), PluginTaskInfos.From("", spec), cancellationToken);
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

    /// <summary>The <c>on_task_complete</c> notification for a recorded result (every result message, duplicates included; spec §7.8).</summary>
    public void Completed(TaskState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (Active && PluginTaskInfos.From(state) is { } info)
        {
            gate.OnTaskCompleted(info, state.Status == TaskStatus.Completed, state.Error);
        }
    }

    /// <summary>The outcome of an authorization: <see cref="Denied"/> is the HTTP answer when a plugin said no, <see cref="Reason"/> its error text.</summary>
    public sealed record Gated(IResult? Denied, IReadOnlyList<PluginDecision> Decisions, string? Reason = null)
    {
        public static Gated Allowed { get; } = new(null, []);

        public IReadOnlyDictionary<string, string>? Headers => PluginTaskInfos.Headers(Decisions);
    }
}
