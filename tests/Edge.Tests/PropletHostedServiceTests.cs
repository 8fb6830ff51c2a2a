using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Propeller.Edge.Configuration;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

public sealed class PropletHostedServiceTests
{
    /// <summary>
    /// The proplet failing after it started (here its client certificate does not load: a settings object the loader
    /// would have refused) stops the host and is reported failed, which Program turns into exit code 1. Left to the host
    /// (BackgroundServiceExceptionBehavior.StopHost), the host stopped all the same and the process exited 0.
    /// </summary>
    [Fact]
    public async Task GivenAPropletThatFailsAfterStarting_WhenItsHostRuns_ThenTheHostStopsAndTheFailureIsReported()
    {
        using var tls = new TlsFiles();
        var settings = TestSettings.Create() with { MqttAddress = "ssl://127.0.0.1:1", TlsClientCert = tls.Garbage, TlsClientKey = tls.Key };
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddLogging();
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<PropletHostedService>();
        builder.Services.AddHostedService(services => services.GetRequiredService<PropletHostedService>());
        using var host = builder.Build();
        var service = host.Services.GetRequiredService<PropletHostedService>(); // as Program: RunAsync disposes the host

        await host.RunAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        service.Failed.ShouldBeTrue();
    }
}
