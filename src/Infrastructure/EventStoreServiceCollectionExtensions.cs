using Marten;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application;
using Propeller.Application.Aggregates;
using Propeller.Application.Changes;
using Propeller.Application.EventStore;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure;

/// <summary>Composition of the event store for hosts (AddInfrastructure calls this).</summary>
public static class EventStoreServiceCollectionExtensions
{
    /// <summary>
    /// Registers the event store on Marten (ADR 0010): Marten's streams, projections and documents, the port on them,
    /// snapshots and the command path. The schema (Marten's and our outbox, inbox and telemetry tables) is applied by a
    /// hosted service at startup; with <paramref name="runDaemon"/> Marten's async daemon runs in this host.
    /// <paramref name="marten"/> adds to Marten's registration (the Wolverine pipeline integrates with it; ADR 0014).
    /// </summary>
    public static IServiceCollection AddEventStore(
        this IServiceCollection services, Action<EventStoreOptions> configure, bool runDaemon = true,
        Action<MartenServiceCollectionExtensions.MartenConfigurationExpression>? marten = null)
    {
        services.AddOptions<EventStoreOptions>()
            .Configure(configure)
            .Validate(o => !string.IsNullOrWhiteSpace(o.ConnectionString), "EventStore:ConnectionString is required (set MANAGER_POSTGRES_*)")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp =>
        {
            var storeOptions = sp.GetRequiredService<IOptions<EventStoreOptions>>().Value;
            return CreateDataSourceBuilder(storeOptions.ConnectionString, storeOptions.Schema).Build();
        });
        services.TryAddSingleton(_ => DomainEvents.CreateRegistry());
        services.TryAddSingleton<EventSerializer>();
        var expression = services.AddMarten(sp =>
        {
            var options = new StoreOptions();
            MartenStoreConfiguration.Configure(
                options, sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<IOptions<EventStoreOptions>>().Value.Schema, sp.GetRequiredService<EventTypeRegistry>());
            options.Listeners.Add(new CommittedEventCounter());
            return options;
        }).UseLightweightSessions();
        marten?.Invoke(expression);

        services.AddOptions<ProjectionHealthOptions>().BindConfiguration("ProjectionHealth");
        services.TryAddSingleton<MartenProjectionMonitor>();
        services.TryAddSingleton<IEventStore, MartenEventStore>();
        services.TryAddSingleton<AggregateLoader>();
        services.TryAddSingleton<StreamChanges>();
        services.TryAddSingleton<IChangeFeed>(sp => sp.GetRequiredService<StreamChanges>());
        services.TryAddSingleton<AggregateCache>();
        services.AddHostedService<MartenSchemaHostedService>();

        // Async projections run in Marten's daemon; Solo: this host runs all of them (Wolverine distributes them later,
        // issue 15). Its hosted service is added after the schema's, so it starts on an applied schema (started
        // earlier, it created tables concurrently with the schema service). The monitor reports the projections' lag
        // and status to /metrics and /health/ready.
        if (runDaemon)
        {
            expression.AddAsyncDaemon(JasperFx.Events.Daemon.DaemonMode.Solo);
        }

        return services;
    }

    /// <summary>
    /// The manager's connection settings on <paramref name="connectionString"/> for <paramref name="schema"/>: its
    /// application name, auto-prepared statements and generic plans; what the connection string sets itself wins.
    /// Public so that whatever measures the manager's statements (bench/) connects the way the manager does.
    /// </summary>
    public static NpgsqlDataSourceBuilder CreateDataSourceBuilder(string connectionString, string schema)
    {
        // Connections are reset when they go back to the pool (Npgsql's default; its reset keeps the auto-prepared
        // statements and goes out with the connection's next statement, no round trip of its own): Wolverine keeps
        // session state on connections of this pool (session-level advisory locks for its leader election and durability
        // pass, its lock connection's application_name), and an unlock that timed out left the lock on a pooled
        // connection for ever. Before session 42 the pool did not reset (No Reset On Close, still honoured in the
        // connection string).
        var builder = new NpgsqlDataSourceBuilder(connectionString);

        // Named in pg_stat_activity by schema, so operators see whose connections these are and `rebuild` can tell
        // that managers are running on the schema. A connection string that names itself keeps its name.
        if (string.IsNullOrEmpty(builder.ConnectionStringBuilder.ApplicationName))
        {
            builder.ConnectionStringBuilder.ApplicationName = ApplicationName(schema);
        }

        // Server-side prepared statements for the hot statements (append, projections, outbox, inbox): without
        // them PostgreSQL parses and plans every statement again, a third of its CPU under load. A connection
        // string that sets "Max Auto Prepare" itself keeps its value.
        if (builder.ConnectionStringBuilder.MaxAutoPrepare == 0)
        {
            builder.ConnectionStringBuilder.MaxAutoPrepare = 64;
            builder.ConnectionStringBuilder.AutoPrepareMinUsages = 3;
        }

        // Generic plans for prepared statements: PostgreSQL kept re-planning the task view's upsert on half of its
        // executions (its custom-plan heuristic), and every statement here is a key lookup or an insert whose
        // plan does not depend on the values. Options given in the connection string win.
        if (string.IsNullOrEmpty(builder.ConnectionStringBuilder.Options))
        {
            builder.ConnectionStringBuilder.Options = "-c plan_cache_mode=force_generic_plan";
        }

        return builder;
    }

    /// <summary>The name a manager's connections carry in pg_stat_activity (PostgreSQL keeps 63 bytes of it).</summary>
    private static string ApplicationName(string schema)
    {
        var name = "propeller-manager/" + schema;
        return name.Length <= 63 ? name : name[..63];
    }
}
