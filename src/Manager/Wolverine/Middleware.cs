using FluentValidation;
using JasperFx;
using JasperFx.CodeGeneration;
using JasperFx.CodeGeneration.Frames;
using Propeller.Application.Aggregates;
using Propeller.Application.Plugins;
using Propeller.Application.Tasks;
using Propeller.Contracts.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Manager.Plugins;
using Wolverine.Configuration;
using Wolverine.Runtime.Handlers;
using static Propeller.Domain.Tasks.TaskCommand;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// FluentValidation before the handler (ADR 0014; WolverineFx.FluentValidation is not served): for every handler chain
/// whose message type has registered validators, a call to <see cref="FluentValidationMiddleware"/> is woven into the
/// generated code ahead of the handler (and of the aggregate load). A failure throws FluentValidation's
/// <see cref="ValidationException"/>, which reaches the caller of InvokeAsync (the route answers 400).
/// </summary>
internal sealed class FluentValidationPolicy : IHandlerPolicy
{
    public void Apply(IReadOnlyList<HandlerChain> chains, GenerationRules rules, IServiceContainer container)
    {
        ArgumentNullException.ThrowIfNull(chains);
        ArgumentNullException.ThrowIfNull(container);
        foreach (var chain in chains)
        {
            var validators = container.RegistrationsFor(typeof(IValidator<>).MakeGenericType(chain.MessageType)).Count;
            if (validators == 0)
            {
                continue;
            }

            var name = validators == 1 ? nameof(FluentValidationMiddleware.Validate) : nameof(FluentValidationMiddleware.ValidateAll);
            var method = typeof(FluentValidationMiddleware).GetMethod(name)!.MakeGenericMethod(chain.MessageType);
            chain.Middleware.Insert(0, new MethodCall(typeof(FluentValidationMiddleware), method));
        }
    }
}

/// <summary>The calls <see cref="FluentValidationPolicy"/> weaves in: validate the message, throw on the first failing validator.</summary>
public static class FluentValidationMiddleware
{
    public static void Validate<T>(T message, IValidator<T> validator)
    {
        ArgumentNullException.ThrowIfNull(validator);
        var result = validator.Validate(message);
        if (!result.IsValid)
        {
            throw new ValidationException(result.Errors);
        }
    }

    public static void ValidateAll<T>(T message, IEnumerable<IValidator<T>> validators)
    {
        ArgumentNullException.ThrowIfNull(validators);
        foreach (var validator in validators)
        {
            Validate(message, validator);
        }
    }

    /// <summary>The one-line reason of a failed validation, as the routes answer it (<c>{"error": ...}</c>, 400).</summary>
    public static string Reason(ValidationException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return string.Join('\n', exception.Errors.Select(e => e.ErrorMessage));
    }
}

/// <summary>A task command's request body has the shape the original accepts (the create's body; spec §1.3).</summary>
public sealed class RunTaskCommandValidator : AbstractValidator<RunTaskCommand>
{
    public RunTaskCommandValidator(IValidator<TaskJson> body)
    {
        RuleFor(m => m.Body!).SetValidator(body).When(m => m.Body is not null);
    }
}

/// <summary>
/// The plugin gate as middleware of the task command handler (ADR 0014, spec §7.5, §7.6, §7.9): before the decision it
/// authorizes the command (a deny throws <see cref="PluginDeniedException"/>: nothing is decided or appended, the
/// route answers 403) and enriches a create; every decision goes into the events' metadata as headers. After the
/// commit it sends <c>on_task_start</c> for a start that appended. With no plugins nothing is read or called. A command
/// that comes already gated (<see cref="RunTaskCommand.Gated"/>: <see cref="TaskCommandBatcher"/> gated it on its
/// request's flow before queueing it) keeps that outcome: the plugins are not asked twice.
/// </summary>
public static class PluginGateMiddleware
{
    public static async Task<GatedCommand> BeforeAsync(RunTaskCommand message, TaskPlugins plugins, ITaskQueries queries, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(plugins);
        ArgumentNullException.ThrowIfNull(queries);
        if (message.Gated is { } gatedBefore)
        {
            return gatedBefore;
        }

        if (!plugins.Active)
        {
            return new GatedCommand(message.Command, message.Metadata, null);
        }

        var user = message.Metadata.UserId;
        var command = message.Command;
        PluginTaskInfo? before = null;
        var read = false;
        TaskPlugins.Gated gated;
        IReadOnlyList<PluginDecision> enriched = [];
        switch (command)
        {
            case CreateTask create:
                gated = Allowed(await plugins.AuthorizeAsync(user, PluginAction.Create, PluginTaskInfos.From("", create.Spec), cancellationToken));
                var (spec, decisions) = await plugins.EnrichAsync(user, create.Spec, cancellationToken);
                (command, enriched) = (create with { Spec = spec }, decisions);
                break;
            case RecordResult or RecordInvocation:
                // A proplet's result: nothing to authorize (on_task_complete follows the commit); an invocation was
                // authorized by its route before it ran (its decisions are in the metadata already).
                gated = TaskPlugins.Gated.Allowed;
                break;
            default:
                // An update, start, stop or delete of a stored task: the plugins decide on the task as read here (an
                // update's as it would be patched); the handler checks it is still that task (IsStale).
                var current = await queries.GetAsync(command.TaskId, cancellationToken);
                (before, read) = (Seen(current), true);
                gated = before is null || current?.Spec is not { } stored
                    ? TaskPlugins.Gated.Allowed
                    : Allowed(await plugins.AuthorizeAsync(
                        user,
                        Action(command),
                        command is UpdateTask update ? PluginTaskInfos.From(update.TaskId.ToString(), update.Patch.ApplyTo(stored), current.PropletId, current.CreatedAt) : before,
                        cancellationToken));
                break;
        }

        var headers = PluginTaskInfos.Headers([.. gated.Decisions, .. enriched]);
        return new GatedCommand(command, headers is null ? message.Metadata : message.Metadata with { Headers = headers }, before, read);
    }

    /// <summary>
    /// Whether the plugins authorized <paramref name="gated"/> on a task other than <paramref name="current"/>, the task
    /// as the handler fetched it for writing (null: none): another command committed on it after the gate read it (the
    /// view, read outside the command's transaction). Its command must then be gated again, not decided: before, a
    /// batch's conflict retry reused the outcome of an <c>authorize</c> that had seen the task before an update.
    /// </summary>
    public static bool IsStale(GatedCommand gated, TaskState? current)
    {
        ArgumentNullException.ThrowIfNull(gated);
        return gated.Read && !Equals(gated.Before, Seen(current));
    }

    /// <summary>The task as the plugins see it, as <see cref="ITaskQueries.GetAsync"/> gives it (none once deleted).</summary>
    private static PluginTaskInfo? Seen(TaskState? state) => state is { Deleted: false } ? PluginTaskInfos.From(state) : null;

    /// <summary>
    /// After the commit: <c>on_task_start</c> with the task as it was before a start that appended, and
    /// <c>on_task_complete</c> for every recorded result that leaves the task finished (duplicates included, spec §7.8;
    /// not a stale attempt's result while the current attempt runs: the task has not completed).
    /// </summary>
    public static void AfterCommit(GatedCommand gated, CommandResult<TaskEvent, TaskState> result, TaskPlugins plugins)
    {
        ArgumentNullException.ThrowIfNull(gated);
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(plugins);
        if (gated.Command is StartTask && result.Appended.Count > 0)
        {
            plugins.Started(gated.Before);
        }
        else if (gated.Command is RecordResult && result.Rejection is null && result.State.IsFinished)
        {
            plugins.Completed(result.State);
        }
    }

    private static TaskPlugins.Gated Allowed(TaskPlugins.Gated gated) =>
        gated.Denied is null ? gated : throw new PluginDeniedException(gated.Reason ?? "denied by plugin");

    private static PluginAction Action(TaskCommand command) => command switch
    {
        DeleteTask => PluginAction.Delete,
        StopTask => PluginAction.Stop,
        StartTask => PluginAction.Start,
        _ => PluginAction.Update,
    };
}
