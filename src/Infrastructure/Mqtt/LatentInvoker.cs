using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Propeller.Application.Messaging;
using Propeller.Application.Proplets;
using Propeller.Contracts.Mqtt;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Scheduling;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Invocations of latent tasks (spec propeller-manager.md §2.8): publishes <c>control/manager/invoke</c> with a fresh
/// invocation id and waits (30 s by default) for the <c>invoke_results</c> with that id, which the inbound handler hands
/// to <see cref="Complete"/>. A broadcast task is tried on the alive proplets in round-robin order while they answer
/// "has not been precompiled"; when every one does, the task is deployed again (a targeted latent start to each) and the
/// last error is returned. Pending invocations are in this node's memory: an answer for an unknown id is ignored.
/// </summary>
public sealed class LatentInvoker(ManagerMqtt mqtt, IPropletRegistry proplets, IOptions<SchedulerOptions> scheduler, TimeProvider time, TaskModules modules)
{
    /// <summary>The proplet's text for a task it does not hold (spec propeller-edge.md §2.10).</summary>
    public const string NotPrecompiled = "has not been precompiled";

    private readonly ConcurrentDictionary<string, TaskCompletionSource<InvokeResultMessage>> _pending = new(StringComparer.Ordinal);
    private int _next = -1;

    /// <summary>Hands an answer to the invocation waiting for it; false when none is (late, duplicate or unknown).</summary>
    public bool Complete(InvokeResultMessage result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return result.InvocationId is { Length: > 0 } id && _pending.TryRemove(id, out var waiter) && waiter.TrySetResult(result);
    }

    public async Task<InvocationOutcome> InvokeAsync(
        TaskState task, IReadOnlyList<string>? inputs, IReadOnlyDictionary<string, string>? env, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        var spec = task.Spec ?? throw new InvalidOperationException("a task without a spec cannot be invoked");
        if (!spec.Broadcast)
        {
            return task.PropletId is { } target
                ? await InvokeOnAsync(task, target, inputs, env, cancellationToken)
                : new InvocationOutcome("", null, null, $"task {task.Id} has not been started on a proplet");
        }

        var now = time.GetUtcNow();
        var alive = (await proplets.ListAsync(cancellationToken)).Where(p => p.IsAlive(now, scheduler.Value.LivenessWindow)).ToList();
        if (alive.Count == 0)
        {
            return new InvocationOutcome("", null, null, "no active proplets available");
        }

        var first = (int)((uint)Interlocked.Increment(ref _next) % (uint)alive.Count);
        InvocationOutcome outcome = null!;
        for (var i = 0; i < alive.Count; i++)
        {
            outcome = await InvokeOnAsync(task, alive[(first + i) % alive.Count].Id.ToString(), inputs, env, cancellationToken);
            if (outcome.Error?.Contains(NotPrecompiled, StringComparison.Ordinal) != true)
            {
                return outcome;
            }
        }

        // No proplet holds the task any more (restarts lose it): deploy it again everywhere; the next invoke finds it.
        task = await modules.ResolveAsync(task, cancellationToken);
        foreach (var proplet in alive)
        {
            await mqtt.PublishAsync(StartMessages.LatentRedeploy(task, proplet.Id.ToString(), mqtt.Options.BaseTopic), cancellationToken);
        }

        return outcome;
    }

    private async Task<InvocationOutcome> InvokeOnAsync(
        TaskState task, string propletId, IReadOnlyList<string>? inputs, IReadOnlyDictionary<string, string>? env, CancellationToken cancellationToken)
    {
        var invocationId = Guid.NewGuid().ToString();
        var waiter = new TaskCompletionSource<InvokeResultMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[invocationId] = waiter;
        try
        {
            var message = new InvokeMessage
            {
                Id = task.Id.ToString(),
                Broadcast = false,
                PropletId = propletId,
                InvocationId = invocationId,
                Inputs = inputs is { Count: > 0 } ? inputs : null,
                Env = env is { Count: > 0 } ? env : null,
            };
            await mqtt.PublishAsync(
                new OutgoingMessage(Topics.Of(mqtt.Options.BaseTopic, Topics.Invoke), JsonSerializer.SerializeToUtf8Bytes(message)), cancellationToken);
            var timeout = mqtt.Options.InvokeTimeout;
            try
            {
                var result = await waiter.Task.WaitAsync(timeout, time, cancellationToken);
                return new InvocationOutcome(invocationId, propletId, result.Results, result.Error is { Length: > 0 } error ? error : null);
            }
            catch (TimeoutException)
            {
                return new InvocationOutcome(
                    invocationId, propletId, null,
                    string.Create(CultureInfo.InvariantCulture, $"invocation {invocationId} of task {task.Id} timed out after {timeout.TotalSeconds:0.###} s"));
            }
        }
        finally
        {
            _pending.TryRemove(invocationId, out _);
        }
    }
}
