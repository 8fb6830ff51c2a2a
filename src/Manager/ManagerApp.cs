using FluentValidation;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Propeller.Application.Messaging;
using Propeller.Contracts.Tasks;
using Propeller.Infrastructure;
using Propeller.Manager.Http;
using Propeller.Manager.Proplets;
using Propeller.Manager.Tasks;
using Propeller.Manager.Telemetry;

namespace Propeller.Manager;

/// <summary>The manager's composition root, shared by Program and the API tests.</summary>
public static class ManagerApp
{
    /// <summary>
    /// Builds the web application. Settings: MANAGER_HTTP_HOST/PORT (default localhost:7070), MANAGER_POSTGRES_*,
    /// or EventStore:ConnectionString / EventStore:Schema in configuration (tests).
    /// </summary>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null, bool runDaemon = true)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder);
        var configuration = builder.Configuration;
        var host = configuration["MANAGER_HTTP_HOST"] is { Length: > 0 } h ? h : "localhost";
        var port = configuration["MANAGER_HTTP_PORT"] is { Length: > 0 } p ? p : "7070";
        if (configuration["urls"] is null && configuration["ASPNETCORE_URLS"] is null)
        {
            builder.WebHost.UseUrls($"http://{host}:{port}");
        }

        builder.Services.AddInfrastructure(
            o =>
            {
                o.ConnectionString = configuration["EventStore:ConnectionString"] is { Length: > 0 } cs ? cs : ManagerSettings.PostgresConnectionString();
                o.Schema = configuration["EventStore:Schema"] is { Length: > 0 } schema ? schema : o.Schema;
            },
            runDaemon);
        // One base topic for everything that talks to proplets: m/{MANAGER_TENANT_ID}/c/{MANAGER_CHANNEL_ID}.
        var tenant = configuration["MANAGER_TENANT_ID"] is { Length: > 0 } t ? t : "default";
        var channel = configuration["MANAGER_CHANNEL_ID"] is { Length: > 0 } c ? c : "default";
        var mqttAddress = configuration["MANAGER_MQTT_ADDRESS"] is { Length: > 0 } address ? address : null;
        if (mqttAddress is not null)
        {
            builder.Services.AddManagerMessaging(
                mqtt =>
                {
                    mqtt.Address = mqttAddress;
                    mqtt.Tenant = tenant;
                    mqtt.Channel = channel;
                    mqtt.EntityId = configuration["MANAGER_ENTITY_ID"] is { Length: > 0 } entity ? entity : $"manager-{Environment.MachineName}";
                    mqtt.ApiKey = configuration["MANAGER_API_KEY"];
                    mqtt.QualityOfService = configuration["MANAGER_MQTT_QOS"] is { Length: > 0 } qos && int.TryParse(qos, out var q) && q is >= 0 and <= 2
                        ? (Propeller.Mqtt.MqttQualityOfService)q
                        : Propeller.Mqtt.MqttQualityOfService.ExactlyOnce;
                },
                scheduler =>
                {
                    scheduler.BaseTopic = Propeller.Contracts.Mqtt.Topics.Base(tenant, channel);
                    scheduler.LivenessWindow = LivenessWindow(configuration);
                });
        }

        builder.Services.AddSingleton(new StopMessages(mqttAddress is null ? null : Propeller.Contracts.Mqtt.Topics.Base(tenant, channel)));
        builder.Services.TryAddSingleton<WorkSignals>();
        builder.Services.AddSingleton<CommandSender>();
        builder.Services.AddSingleton(new ManagerOptions(LivenessWindow(configuration)));
        builder.Services.AddSingleton<IValidator<TaskJson>, TaskJsonValidator>();
        builder.Services.AddExceptionHandler<ApiExceptionHandler>();
        builder.Services.AddProblemDetails();
        builder.Services.AddSingleton<PrometheusMetrics>();

        var app = builder.Build();
        app.UseExceptionHandler();
        app.UseApiMetrics();
        var metrics = app.Services.GetRequiredService<PrometheusMetrics>();
        app.MapGet("/metrics", () => Results.Text(metrics.Scrape(), "text/plain; version=0.0.4")).WithName("metrics");
        app.MapHealthEndpoints();
        app.MapTaskEndpoints();
        app.MapPropletEndpoints();
        app.MapMetricsEndpoints();
        return app;
    }

    private static TimeSpan LivenessWindow(IConfiguration configuration) =>
        TimeSpan.FromSeconds(double.TryParse(configuration["MANAGER_PROPLET_LIVENESS_WINDOW"], System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds > 0 ? seconds : 30);
}
