namespace Propeller.Contracts.Mqtt;

/// <summary>Topic names of the original (spec propeller-edge.md §1.1–§1.2): <c>m/{tenant}/c/{channel}/{path}</c>, unescaped.</summary>
public static class Topics
{
    public const string PropletCreate = "control/proplet/create";
    public const string PropletAlive = "control/proplet/alive";
    public const string PropletMetrics = "control/proplet/metrics";
    public const string TaskMetrics = "control/proplet/task_metrics";
    public const string Results = "control/proplet/results";
    public const string InvokeResults = "control/proplet/invoke_results";
    public const string Start = "control/manager/start";
    public const string Stop = "control/manager/stop";
    public const string Invoke = "control/manager/invoke";
    public const string RegistryRequest = "registry/proplet";
    public const string RegistryChunks = "registry/server";

    /// <summary>Ours (docs/proxy.md): the proxy reports an image it cannot deliver.</summary>
    public const string RegistryFailure = "registry/failure";

    /// <summary>Ours (docs/proxy.md): binary chunks (<see cref="BinaryChunkHeader"/>) for a request that announced the
    /// format. Its name does not contain <see cref="RegistryChunks"/>, which old proplets match by substring.</summary>
    public const string RegistryBinaryChunks = "registry/chunk";

    public static string Base(string tenant, string channel) => $"m/{tenant}/c/{channel}";

    public static string Of(string baseTopic, string path) => $"{baseTopic}/{path}";
}
