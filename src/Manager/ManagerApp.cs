using FluentValidation;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.AspNetCore.WebUtilities;
using Propeller.Contracts.Tasks;
using Propeller.Infrastructure;
using Propeller.Manager.Configuration;
using Propeller.Manager.Dashboard;
using Propeller.Manager.Events;
using Propeller.Manager.Http;
using Propeller.Manager.Proplets;
using Propeller.Manager.Tasks;
using Propeller.Manager.Telemetry;
using Propeller.Manager.Wolverine;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Jobs;

namespace Propeller.Manager;

/// <summary>The manager's composition root, shared by Program and the API tests.</summary>
public static class ManagerApp
{
    /// <summary>The largest request body the API reads (the original's <c>maxFileSize</c>, 100 MiB).</summary>
    public const long MaxRequestBodyBytes = 100L * 1024 * 1024;

    /// <summary>
    /// Builds the web application from the MANAGER_* settings (<see cref="ManagerConfig"/>; docs/operations.md), or
    /// EventStore:ConnectionString / EventStore:Schema in configuration (tests).
    /// </summary>
    /// <exception cref="ManagerConfigurationException">A setting is invalid (the message lists every problem).</exception>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null, bool runDaemon = true)
    {
        // No file watching for configuration reloads: the manager has no appsettings files, and the watcher on the
        // content root (recursive) spent CPU on every write below it (a PostgreSQL data directory, build output).
        var builder = WebApplication.CreateBuilder([.. args, "--hostBuilder:reloadConfigOnChange=false"]);
        configure?.Invoke(builder);
        var config = ManagerConfig.Load(builder.Configuration, Directory.GetCurrentDirectory());
        if (builder.Configuration["MANAGER_LOG_LEVEL"] is { Length: > 0 })
        {
            builder.Logging.SetMinimumLevel(config.LogLevel);
        }

        // Wolverine's and Marten's agents log every poll that fails while PostgreSQL is unusable (Telemetry/OutageLogCondenser),
        // and both log every lost race on a stream, which is retried, as an error (Telemetry/RoutineConflictLogs).
        builder.Services.TryAddSingleton<LoggerFactory>();
        builder.Services.Replace(ServiceDescriptor.Singleton<ILoggerFactory>(sp =>
            new OutageLogCondenser(new RoutineConflictLogs(sp.GetRequiredService<LoggerFactory>()), TimeProvider.System)));

        if (config.LogLevel > LogLevel.Debug)
        {
            // The framework's per-request lines are debugging detail; its warnings, errors and lifetime lines stay.
            builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        }

        if (builder.Configuration["urls"] is null && builder.Configuration["ASPNETCORE_URLS"] is null)
        {
            // HTTPS when MANAGER_HTTP_SERVER_CERT and _KEY are set (spec §8), as the original's server does.
            var scheme = config.HttpsCertificate is null ? "http" : "https";
            builder.WebHost.UseUrls($"{scheme}://{config.HttpHost}:{config.HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // The original's body limit (spec §1: every body read through a 100 MiB reader); Kestrel's default is
            // 30,000,000 bytes, which refused a 29 MB module the original takes.
            kestrel.Limits.MaxRequestBodySize = MaxRequestBodyBytes;
            if (config.HttpsCertificate is { } certificate)
            {
                // Every https:// endpoint (also one given with --urls or ASPNETCORE_URLS) uses the configured certificate.
                kestrel.ConfigureHttpsDefaults(https => https.ServerCertificate = certificate);
            }

            if (config.HttpReadHeaderTimeout is { } readHeaderTimeout)
            {
                kestrel.Limits.RequestHeadersTimeout = readHeaderTimeout;
            }

            if (config.HttpIdleTimeout is { } idleTimeout)
            {
                kestrel.Limits.KeepAliveTimeout = idleTimeout;
            }

            if (config.HttpMaxHeaderBytes is { } maxHeaderBytes)
            {
                kestrel.Limits.MaxRequestHeadersTotalSize = maxHeaderBytes;
            }
        });
        builder.Services.Configure<Microsoft.AspNetCore.Http.Features.FormOptions>(form => form.MultipartBodyLengthLimit = MaxRequestBodyBytes);
        builder.Services.AddSingleton(config);

        // Balanced mode: Wolverine distributes Marten's async projections among the nodes,
        // so Marten's own daemon is not added (ADR 0014).
        var wolverineRunsProjections = runDaemon && config.Durability == DurabilityModeSetting.Balanced;
        builder.Services.AddInfrastructure(
            o =>
            {
                o.ConnectionString = config.PostgresConnectionString;
                o.Schema = config.PostgresSchema ?? o.Schema;
            },
            runDaemon && !wolverineRunsProjections,
            m => WolverinePipeline.IntegrateMarten(m, config.PostgresSchema ?? "propeller", wolverineRunsProjections));
        builder.Services.Configure<Infrastructure.MartenStore.ProjectionHealthOptions>(o =>
        {
            o.MaxLag = config.ProjectionMaxLag;
            o.StallTimeout = config.ProjectionStallTimeout;
            o.Distributed = wolverineRunsProjections;
        });
        if (config.PluginDir is { } pluginDir)
        {
            // Wasm plugins gate the task commands (docs/plugins.md); their jobs live beside the event store. Registered
            // before the command pipeline: hosted services start in registration order (and stop in reverse), so the
            // plugin host is ready before Wolverine places a task and drains notifications after it stopped.
            builder.Services.AddWasmPlugins(new PluginHostOptions
            {
                Directory = pluginDir,
                Jobs = new PluginJobOptions { ConnectionString = config.PostgresConnectionString, Schema = (config.PostgresSchema ?? "propeller") + "_plugins" },
            });
        }

        builder.AddWolverinePipeline(config.Durability, config.NodeStaleTimeout, config.CommandBatches, config.DeadLetterRetention);

        // One base topic for everything that talks to proplets: m/{MANAGER_TENANT_ID}/c/{MANAGER_CHANNEL_ID}.
        var baseTopic = Propeller.Contracts.Mqtt.Topics.Base(config.Tenant, config.Channel);
        if (config.MqttAddress is { } mqttAddress)
        {
            builder.Services.AddManagerMessaging(
                mqtt =>
                {
                    mqtt.Address = mqttAddress;
                    mqtt.Tenant = config.Tenant;
                    mqtt.Channel = config.Channel;
                    mqtt.EntityId = config.EntityId;
                    mqtt.ApiKey = config.ApiKey;
                    mqtt.QualityOfService = config.MqttQos;
                    mqtt.ProtocolVersion = config.MqttProtocolVersion;
                    mqtt.OperationTimeout = config.MqttTimeout;
                    mqtt.ShareGroup = config.MqttShareGroup;
                    mqtt.ShareGroupIfOffered = config.MqttShareGroupIfOffered;
                    mqtt.SessionStaleTimeout = config.NodeStaleTimeout;
                    mqtt.Tls = config.MqttTls;
                    mqtt.InvokeTimeout = config.InvokeTimeout;
                },
                scheduler =>
                {
                    scheduler.BaseTopic = baseTopic;
                    scheduler.LivenessWindow = config.LivenessWindow;
                    scheduler.ReconnectAllowance = config.ReconnectAllowance;
                    scheduler.Policy = config.Policy;
                    scheduler.MaxRedispatches = config.MaxRedispatches;
                    scheduler.RedispatchResetAfter = config.RedispatchResetAfter;
                    scheduler.OfflineRedispatchDelay = config.OfflineRedispatchDelay;
                });
            builder.Services.AddWolverineScheduling();
        }

        builder.Services.TryAddSingleton(new Events.EventReaders(config.EventsMaxStreams));
        builder.Services.AddSingleton(new StopMessages(config.MqttAddress is null ? null : baseTopic));
        builder.Services.AddSingleton<Plugins.TaskPlugins>();
        builder.Services.AddSingleton<IValidator<TaskJson>, TaskJsonValidator>();
        builder.Services.AddExceptionHandler<ApiExceptionHandler>();
        builder.Services.AddProblemDetails();
        builder.Services.AddSingleton<PrometheusMetrics>();
        builder.Services.AddSingleton<MetricsSamplers>();
        builder.Services.Configure<Infrastructure.Telemetry.MetricsRetentionOptions>(o => o.Retention = config.MetricsRetention);
        builder.Services.AddHostedService<Infrastructure.Telemetry.MetricsRetention>();
        // The origins MANAGER_HTTP_TRUSTED_ORIGINS names may use the whole API from a browser page (ADR 0020): CORS lets
        // their pages send JSON and read the answers; CrossOriginProtection lets their writes through.
        builder.Services.AddCors(o => o.AddDefaultPolicy(policy => policy
            .WithOrigins([.. config.HttpTrustedOrigins]).AllowAnyMethod().AllowAnyHeader().WithExposedHeaders("Location")));
        builder.Services.AddOpenApi(o => o.AddConverterSchemas().AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "Propeller manager API";
            document.Info.Description = "The original Propeller manager's task and proplet routes, plus history, replay, long polling, health and metrics.";
            return Task.CompletedTask;
        }));

        var app = builder.Build();
        app.UseExceptionHandler();
        // A route or method the API does not have (404, 405; chi wrote `404 page not found` as text, a 405 with no
        // body) answers {"error"} as every other refusal does; an answer with a body of its own is left alone.
        app.UseStatusCodePages(context => context.HttpContext.Response.WriteAsJsonAsync(
            new Contracts.ErrorJson((ReasonPhrases.GetReasonPhrase(context.HttpContext.Response.StatusCode) is { Length: > 0 } reason ? reason : "error").ToLowerInvariant()),
            context.HttpContext.RequestAborted));
        app.UseDashboard();
        app.UseApiMetrics();
        if (config.HttpTrustedOrigins.Count > 0)
        {
            app.UseCors();
        }

        app.UseCrossOriginProtection(config.HttpTrustedOrigins, config.HttpAllowedHosts, config.HttpHost);
        var metrics = app.Services.GetRequiredService<PrometheusMetrics>();
        app.MapGet("/metrics", async (IServiceProvider services, MetricsSamplers samplers, CancellationToken cancellationToken) =>
        {
            // The async projections' lag is read from PostgreSQL at scrape time (Marten store only). A failed read
            // does not fail the scrape (MetricsSamplers).
            if (services.GetService<Infrastructure.MartenStore.MartenProjectionMonitor>() is { } projections)
            {
                await samplers.SampleAsync("projections", projections.SampleAsync, cancellationToken);
            }

            // Wolverine's dead letters and scheduled messages.
            if (services.GetService<DeadLetterMetrics>() is { } deadLetters)
            {
                await samplers.SampleAsync("dead_letters", _ => deadLetters.SampleAsync(), cancellationToken);
            }

            return Results.Text(metrics.Scrape(), "text/plain; version=0.0.4");
        }).WithName("metrics")
            .WithSummary("Prometheus metrics")
            .WithDescription("The manager's metrics in the Prometheus text format: requests, commands, dispatch, MQTT, projections' lag, dead letters.")
            .Produces(StatusCodes.Status200OK, contentType: "text/plain");
        app.MapOpenApi("/openapi/{documentName}.json");
        app.MapHealthEndpoints();
        app.MapTaskEndpoints();
        app.MapTaskActivityEndpoint();
        app.MapPropletEndpoints();
        app.MapMetricsEndpoints();
        app.MapEventEndpoints();
        app.MapDeadLetterEndpoints();
        app.MapUnbuiltEndpoints();
        if (config.PluginDir is not null)
        {
            app.MapPluginEndpoints();
        }
        else
        {
            app.MapGet("/plugins", () => Results.Ok(new PluginListing("", null, [], []))).WithName("list-plugins")
                .WithSummary("List plugins").WithDescription("No plugin directory is configured (MANAGER_PLUGIN_DIR): none.").Produces<PluginListing>();
            app.MapPost("/plugins/reload", () => ApiResults.Error(StatusCodes.Status409Conflict, "no plugin directory is configured (MANAGER_PLUGIN_DIR)")).WithName("reload-plugins")
                .WithSummary("Reload plugins").WithDescription("No plugin directory is configured (MANAGER_PLUGIN_DIR): always 409.").Refuses(StatusCodes.Status403Forbidden, StatusCodes.Status409Conflict);
        }
        return app;
    }
}
