using System.Text.Json.Serialization;
using Propeller.Application.Plugins;
using Propeller.Application.Tasks;
using Propeller.Contracts.Json;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Mqtt;
using Propeller.Manager.Http;
using Propeller.Manager.Plugins;
using Propeller.Manager.Wolverine;

namespace Propeller.Manager.Tasks;

/// <summary>
/// <c>POST /tasks/{id}/invoke</c> (spec propeller-manager.md §2.8): runs a started latent task once more on its proplet
/// (or, broadcast, on the first alive proplet that holds it) and answers with its results: 200
/// <c>{"invoked":true,"results":"…"}</c>, or 500 with the proplet's error or the 30 s timeout. Beyond the original,
/// every invocation is recorded in the task's history (<c>task.invoked.v1</c>).
/// </summary>
internal static class TaskInvocation
{
    public static async Task<IResult> InvokeAsync(
        string taskId, HttpRequest request, ITaskQueries queries, WolverineTaskCommands commands, TaskPlugins plugins, IServiceProvider services,
        TimeProvider time, CancellationToken cancellationToken)
    {
        if (!TaskEndpoints.TryTaskId(taskId, out var id))
        {
            return ApiResults.BadRequest("invalid query parameters");
        }

        // The body is optional; the content type is checked only when there is one (as the original).
        InvokeJson? body = null;
        if (request.ContentLength is not 0 && (request.ContentLength > 0 || request.ContentType is not null))
        {
            var (read, error) = await JsonBody.ReadAsync<InvokeJson>(request, cancellationToken);
            if (error is not null)
            {
                return error;
            }

            body = read;
        }

        if (await queries.GetAsync(id, cancellationToken) is not { Spec: { } spec } task)
        {
            return ApiResults.NotFound("task not found");
        }

        if (!spec.Latent)
        {
            return ApiResults.Error(StatusCodes.Status500InternalServerError, $"task {id} is not a latent task and cannot be invoked");
        }

        var gated = await plugins.AuthorizeAsync(request, PluginAction.Invoke, id, cancellationToken);
        if (gated.Denied is { } denied)
        {
            return denied;
        }

        if (services.GetService<LatentInvoker>() is not { } invoker)
        {
            return ApiResults.Error(StatusCodes.Status500InternalServerError, "no MQTT broker is configured: latent tasks cannot be invoked");
        }

        // A null value as "", as the original's Go decoding makes it (and a create's env, TaskMapping): the proplets refuse a null.
        var env = body?.Env?.ToDictionary(p => p.Key, p => p.Value ?? "", StringComparer.Ordinal);
        var outcome = await invoker.InvokeAsync(task, body?.Inputs, env, cancellationToken);
        if (outcome.InvocationId.Length > 0)
        {
            var recorded = await commands.SendAsync(
                new TaskCommand.RecordInvocation(id, outcome.InvocationId, outcome.PropletId, outcome.Results, outcome.Error, time.GetUtcNow()),
                request, null, cancellationToken, gated.Headers);
            if (recorded.Refused is not null || recorded.Result!.Rejection is not null)
            {
                return WolverineTaskCommands.Answer(recorded, _ => Results.Ok());
            }
        }

        return outcome.Error is { } failure
            ? ApiResults.Error(StatusCodes.Status500InternalServerError, failure)
            : Results.Ok(new InvokedJson(true, outcome.Results ?? ""));
    }

    /// <summary>The optional body: inputs (strings or numbers, as for create) and env merged over the task's.</summary>
    internal sealed record InvokeJson(
        [property: JsonPropertyName("inputs"), JsonConverter(typeof(FlexStringsConverter))] IReadOnlyList<string>? Inputs,
        [property: JsonPropertyName("env")] IReadOnlyDictionary<string, string?>? Env);
}
