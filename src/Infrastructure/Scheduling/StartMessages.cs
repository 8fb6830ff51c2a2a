using System.Text.Json;
using Propeller.Application.Messaging;
using Propeller.Contracts.Mqtt;
using Propeller.Contracts.Tasks;
using Propeller.Domain.Tasks;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.Scheduling;

/// <summary>The start message for a dispatched task, in the original's payload (spec propeller-edge.md §1.8).</summary>
internal static class StartMessages
{
    public static OutgoingMessage For(TaskState task, string baseTopic, string? correlationId)
    {
        var message = Message(task);
        var headers = correlationId is null ? null : new Dictionary<string, string> { ["correlation_id"] = correlationId };
        return new OutgoingMessage(Topics.Of(baseTopic, Topics.Start), JsonSerializer.SerializeToUtf8Bytes(message), headers);
    }

    /// <summary>The start that deploys a latent task again on one proplet (spec propeller-manager.md §2.8).</summary>
    public static OutgoingMessage LatentRedeploy(TaskState task, string propletId, string baseTopic)
    {
        var message = Message(task) with { Broadcast = false, Daemon = false, Latent = true, PropletId = propletId };
        return new OutgoingMessage(Topics.Of(baseTopic, Topics.Start), JsonSerializer.SerializeToUtf8Bytes(message));
    }

    private static StartMessage Message(TaskState task)
    {
        var spec = task.Spec ?? throw new InvalidOperationException("a task without a spec cannot start");
        return new StartMessage
        {
            Id = task.Id.ToString(),
            Name = spec.Name,
            State = (int)TaskStatus.Scheduled,
            ImageUrl = spec.ImageUrl,
            File = spec.File,
            Inputs = spec.Inputs.Count == 0 ? null : [.. spec.Inputs],
            CliArgs = spec.CliArgs is { } args ? [.. args] : null,
            Broadcast = spec.Broadcast,
            Daemon = spec.Daemon,
            Latent = spec.Latent,
            Env = spec.Env.Count == 0 ? null : spec.Env.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
            Encrypted = spec.Encrypted,
            KbsResourcePath = spec.KbsResourcePath,
            // Normalised at the API; a task created before that holds the client's text, completed here (all keys).
            MonitoringProfile = MonitoringProfileJson.NormalizeStored(spec.MonitoringProfile) is { } profile ? JsonSerializer.Deserialize<JsonElement>(profile) : null,
            PropletId = spec.Broadcast ? null : task.PropletId,
            HalStoragePath = spec.HalStoragePath,
            Attempt = task.Attempt > 0 ? task.Attempt : null,
            Dispatch = task.Attempt > 0 ? task.Dispatch : null,
        };
    }
}
