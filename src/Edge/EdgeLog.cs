using Microsoft.Extensions.Logging;

namespace Propeller.Edge;

internal static partial class EdgeLog
{
    [LoggerMessage(EventId = 8001, Level = LogLevel.Information, Message = "Proplet {EntityId} starting: broker {Address}, topics {BaseTopic}/..., runtime {Runtime}, {Slots} task slots")]
    public static partial void Starting(ILogger logger, string entityId, string address, string baseTopic, string runtime, int slots);

    [LoggerMessage(EventId = 8002, Level = LogLevel.Warning, Message = "Broker at {Address} not reachable (check PROPLET_MQTT_ADDRESS and the credentials); retrying in {Delay}: {Reason}")]
    public static partial void ConnectRetry(ILogger logger, string address, TimeSpan delay, string reason);

    [LoggerMessage(EventId = 8003, Level = LogLevel.Information, Message = "Connected; subscribed to start, stop, invoke, registry/server, registry/failure and registry/chunk")]
    public static partial void Subscribed(ILogger logger);

    [LoggerMessage(EventId = 8004, Level = LogLevel.Information, Message = "Published discovery (session present: {SessionPresent})")]
    public static partial void DiscoveryPublished(ILogger logger, bool sessionPresent);

    [LoggerMessage(EventId = 8005, Level = LogLevel.Warning, Message = "Invalid start request for task {TaskId}: {Reason}")]
    public static partial void InvalidStart(ILogger logger, string taskId, string reason);

    [LoggerMessage(EventId = 8006, Level = LogLevel.Warning, Message = "Task {TaskId} is already running here; duplicate start ignored")]
    public static partial void DuplicateStart(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8007, Level = LogLevel.Information, Message = "Task {TaskId} accepted (function {Name})")]
    public static partial void TaskAccepted(ILogger logger, string taskId, string name);

    [LoggerMessage(EventId = 8008, Level = LogLevel.Information, Message = "Task {TaskId} completed")]
    public static partial void TaskSucceeded(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8009, Level = LogLevel.Warning, Message = "Task {TaskId} failed: {Error}")]
    public static partial void TaskFailed(ILogger logger, string taskId, string error);

    [LoggerMessage(EventId = 8010, Level = LogLevel.Error, Message = "Task {TaskId} hit an unexpected proplet error")]
    public static partial void TaskCrashed(ILogger logger, string taskId, Exception exception);

    [LoggerMessage(EventId = 8011, Level = LogLevel.Warning, Message = "Ignored a malformed stop request: {Reason}")]
    public static partial void InvalidStop(ILogger logger, string reason);

    [LoggerMessage(EventId = 8012, Level = LogLevel.Information, Message = "Stopping task {TaskId}")]
    public static partial void Stopping(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8013, Level = LogLevel.Debug, Message = "Stop for task {TaskId}, which does not run here")]
    public static partial void StopUnknown(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8014, Level = LogLevel.Warning, Message = "No result published for task {TaskId}: the proplet is shutting down")]
    public static partial void ResultDropped(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8079, Level = LogLevel.Error, Message = "The result for task {TaskId} is too large for the broker ({Reason}); an error result goes out instead")]
    public static partial void ResultTooLarge(ILogger logger, string taskId, string reason);

    [LoggerMessage(EventId = 8080, Level = LogLevel.Error, Message = "No result published for task {TaskId}: even its error result is too large for the broker ({Reason})")]
    public static partial void ErrorResultTooLarge(ILogger logger, string taskId, string reason);

    [LoggerMessage(EventId = 8081, Level = LogLevel.Warning, Message = "{Warning}")]
    public static partial void SettingKeptDefault(ILogger logger, string warning);

    [LoggerMessage(EventId = 8015, Level = LogLevel.Warning, Message = "Publishing on {Topic} failed; retrying in {Delay}: {Reason}")]
    public static partial void PublishRetry(ILogger logger, string topic, TimeSpan delay, string reason);

    [LoggerMessage(EventId = 8016, Level = LogLevel.Warning, Message = "PROPLET_DIRS entry {Dir} does not exist; not preopened for task {TaskId}")]
    public static partial void PreopenSkipped(ILogger logger, string dir, string taskId);

    [LoggerMessage(EventId = 8047, Level = LogLevel.Warning, Message = "Start of task {TaskId} dropped: the proplet is shutting down (the manager places it again once this proplet is offline)")]
    public static partial void StartDuringShutdown(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8049, Level = LogLevel.Warning, Message = "Task {TaskId}: the external runtime exited but its output stayed open (a process it left running holds it); the result has what came until then")]
    public static partial void OutputHeldOpen(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8048, Level = LogLevel.Error, Message = "The plugins' admission of task {TaskId} failed unexpectedly; it gets an error result")]
    public static partial void AdmissionFailed(ILogger logger, string taskId, Exception exception);

    [LoggerMessage(EventId = 8030, Level = LogLevel.Warning, Message = "Task {TaskId} was ended while its guest waited in a host call; the guest stops when the call returns")]
    public static partial void GuestInHostCall(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8017, Level = LogLevel.Warning, Message = "Task {TaskId} wrote {Total} bytes of output; only the first {Limit} are kept")]
    public static partial void OutputTruncated(ILogger logger, string taskId, long total, int limit);

    [LoggerMessage(EventId = 8019, Level = LogLevel.Warning, Message = "Dropped a malformed message on {Topic}: {Reason}")]
    public static partial void Malformed(ILogger logger, string topic, string reason);

    [LoggerMessage(EventId = 8020, Level = LogLevel.Warning, Message = "Chunk assembly for {App} expired with {Received}/{Total} chunks")]
    public static partial void ChunksExpired(ILogger logger, string app, int received, int total);

    [LoggerMessage(EventId = 8021, Level = LogLevel.Warning, Message = "PROPLET_EXTERNAL_WASM_RUNTIME '{Runtime}' not found; using the in-process runtime")]
    public static partial void ExternalRuntimeMissing(ILogger logger, string runtime);

    [LoggerMessage(EventId = 8022, Level = LogLevel.Error, Message = "Handling a message on {Topic} failed")]
    public static partial void HandlerFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 8024, Level = LogLevel.Warning, Message = "Metrics endpoint not started: port {Port} unavailable ({Reason}); set PROPLET_METRICS_PORT or PROPLET_METRICS_ENABLED=false")]
    public static partial void MetricsPortUnavailable(ILogger logger, int port, string reason);

    [LoggerMessage(EventId = 8025, Level = LogLevel.Information, Message = "Metrics and health on http://0.0.0.0:{Port}/metrics and /health")]
    public static partial void MetricsListening(ILogger logger, int port);

    [LoggerMessage(EventId = 8023, Level = LogLevel.Information, Message = "Proplet {EntityId} stopped")]
    public static partial void Stopped(ILogger logger, string entityId);

    [LoggerMessage(EventId = 8026, Level = LogLevel.Warning, Message = "Task {TaskId} refused by a plugin: {Reason}")]
    public static partial void PluginDenied(ILogger logger, string taskId, string reason);

    [LoggerMessage(EventId = 8040, Level = LogLevel.Warning, Message = "Ignored a malformed invoke request: {Reason}")]
    public static partial void InvalidInvoke(ILogger logger, string reason);

    [LoggerMessage(EventId = 8041, Level = LogLevel.Information, Message = "Latent task {TaskId} precompiled; it runs on invoke")]
    public static partial void LatentDeployed(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8076, Level = LogLevel.Warning, Message = "Task {TaskId}: the external runtime serving it took no connection on port {Port} within {Seconds} s; reported started anyway")]
    public static partial void ProxyNotListening(ILogger logger, string taskId, int port, double seconds);

    [LoggerMessage(EventId = 8077, Level = LogLevel.Information, Message = "Task {TaskId} (attempt {Attempt}) serves here already (a daemon or a served HTTP proxy): its start again gets its started result again")]
    public static partial void ServingStartedSentAgain(ILogger logger, string taskId, int attempt);

    [LoggerMessage(EventId = 8078, Level = LogLevel.Information, Message = "Task {TaskId} (attempt {Attempt}) was dispatched here again while it runs here: the run is dispatch {Dispatch} from now on")]
    public static partial void RunAdoptsDispatch(ILogger logger, string taskId, int attempt, int dispatch);

    [LoggerMessage(EventId = 8075, Level = LogLevel.Information, Message = "Task {TaskId}, a daemon or a served HTTP proxy, ended on its own ({Outcome}): its end is published")]
    public static partial void ServingRunEnded(ILogger logger, string taskId, string outcome);

    [LoggerMessage(EventId = 8074, Level = LogLevel.Information, Message = "Latent task {TaskId} stopped: its deployment is gone")]
    public static partial void LatentStopped(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8042, Level = LogLevel.Information, Message = "WebAssembly engine: {Allocator}")]
    public static partial void EngineAllocator(ILogger logger, string allocator);

    [LoggerMessage(EventId = 8043, Level = LogLevel.Warning, Message = "The process's WebAssembly engine already exists with another pool ({Allocator}); this proplet's PROPLET_WASM_POOL_INSTANCES and memory cap do not apply to it")]
    public static partial void EngineAlreadyPooled(ILogger logger, string allocator);

    [LoggerMessage(EventId = 8044, Level = LogLevel.Information, Message = "HTTP proxy component of task {TaskId} serving on port {Port}")]
    public static partial void HttpProxyStarted(ILogger logger, string taskId, int port);

    [LoggerMessage(EventId = 8045, Level = LogLevel.Information, Message = "HTTP proxy of task {TaskId} stopped; port {Port} freed")]
    public static partial void HttpProxyStopped(ILogger logger, string taskId, int port);

    [LoggerMessage(EventId = 8046, Level = LogLevel.Warning, Message = "HTTP proxy of task {TaskId}: {Method} {Path} answered 500: {Error}{Stderr}")]
    public static partial void HttpProxyRequestFailed(ILogger logger, string taskId, string method, string path, string error, string stderr);

    [LoggerMessage(EventId = 8060, Level = LogLevel.Warning, Message = "Start of task {TaskId} attempt {Attempt} arrived after the stop of that attempt; not run")]
    public static partial void StartAfterItsStop(ILogger logger, string taskId, int attempt);

    [LoggerMessage(EventId = 8061, Level = LogLevel.Warning, Message = "Stop of task {TaskId} attempt {Attempt} ignored: a later attempt of it runs here")]
    public static partial void StaleStop(ILogger logger, string taskId, int attempt);

    [LoggerMessage(EventId = 8063, Level = LogLevel.Warning, Message = "Start of task {TaskId} attempt {Attempt} stops an earlier attempt of it here (whose stop was lost or is late); it runs once that one has ended")]
    public static partial void EarlierAttemptSuperseded(ILogger logger, string taskId, int attempt);

    [LoggerMessage(EventId = 8064, Level = LogLevel.Warning, Message = "Start of task {TaskId} attempt {Attempt} dropped: a later attempt of it runs or is being admitted here")]
    public static partial void StaleStart(ILogger logger, string taskId, int attempt);

    [LoggerMessage(EventId = 8072, Level = LogLevel.Information, Message = "Start of task {TaskId} attempt {Attempt} (dispatch {Dispatch}) dropped: that run finished here (a start delivered or sent again)")]
    public static partial void StartOfFinishedRun(ILogger logger, string taskId, int attempt, int dispatch);

    [LoggerMessage(EventId = 8073, Level = LogLevel.Information, Message = "Start of task {TaskId} attempt {Attempt} (dispatch {Dispatch}): that run finished here, its result is sent again (the first was lost on the way)")]
    public static partial void ResultOfFinishedRunSentAgain(ILogger logger, string taskId, int attempt, int dispatch);

    [LoggerMessage(EventId = 8065, Level = LogLevel.Warning, Message = "PROPLET_DIRS entry {Dir} cannot be opened ({Reason}); not preopened for task {TaskId}")]
    public static partial void PreopenUnopenable(ILogger logger, string dir, string reason, string taskId);

    [LoggerMessage(EventId = 8062, Level = LogLevel.Warning, Message = "Invoke of task {TaskId} dropped: the proplet is shutting down")]
    public static partial void InvokeDuringShutdown(ILogger logger, string taskId);

    [LoggerMessage(EventId = 8070, Level = LogLevel.Error, Message = "Metrics endpoint: {Path} failed; answered 500")]
    public static partial void MetricsRequestFailed(ILogger logger, string? path, Exception exception);

    [LoggerMessage(EventId = 8082, Level = LogLevel.Error, Message = "Metrics endpoint: answering {Path} failed; the connection was closed")]
    public static partial void MetricsAnswerFailed(ILogger logger, string? path, Exception exception);

    [LoggerMessage(EventId = 8083, Level = LogLevel.Critical, Message = "Proplet stopped on an error: {Error}; exiting with code 1")]
    public static partial void PropletFailed(ILogger logger, string error, Exception exception);

    [LoggerMessage(EventId = 8084, Level = LogLevel.Warning, Message = "Proplet {EntityId} could not publish \"offline\" on its way out: leaving without DISCONNECT, so that the broker publishes its Last Will")]
    public static partial void LeavingWithWill(ILogger logger, string entityId);

    [LoggerMessage(EventId = 8071, Level = LogLevel.Warning, Message = "Task metrics for {TaskId}: a sample failed ({Reason}); the next interval tries again")]
    public static partial void TaskMetricsSampleFailed(ILogger logger, string taskId, string reason);
}
