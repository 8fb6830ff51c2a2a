using System.Collections.Concurrent;

namespace Propeller.Edge.Tasks;

/// <summary>
/// A deployed latent task (spec §2.10): its start request, the runtime's prepared component, and the invocations in
/// flight, which a stop of the task ends too. It stays in the proplet's running map until stopped, so a duplicate start
/// is ignored.
/// </summary>
public sealed class LatentTask(RunningTask deployment, object prepared, bool isHttpProxy)
{
    public RunningTask Deployment { get; } = deployment;

    public StartRequest Request => Deployment.Request;

    public object Prepared { get; } = prepared;

    public bool IsHttpProxy { get; } = isHttpProxy;

    public ConcurrentDictionary<RunningTask, byte> Invocations { get; } = new();
}
