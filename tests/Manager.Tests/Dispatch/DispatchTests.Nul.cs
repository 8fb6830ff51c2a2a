using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>A proplet's message holding U+0000 is dropped as malformed before PostgreSQL sees it (see NulValueTests).</summary>
public partial class DispatchTests
{
    [Fact]
    public async Task GivenADiscoveryAndAHeartbeatHoldingANul_WhenHandled_ThenTheyAreDroppedAsMalformedAndAGoodOneBesideIsRegistered()
    {
        var (bad, good) = (Guid.NewGuid().ToString(), Guid.NewGuid().ToString());
        ReceivedMessage Message(string path, string json) => new($"{Base}/{path}", Encoding.UTF8.GetBytes(json), MqttQualityOfServiceLevel.AtLeastOnce, Retain: false, Duplicate: false);

        await _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().AcceptBatchAsync(
            [
                Message("control/proplet/create", $$$"""{"proplet_id":"{{{bad}}}","metadata":{"hostname":"h\u0000st"}}"""),
                Message("control/proplet/alive", """{"proplet_id":"p\u0000","status":"alive"}"""),
                Message("control/proplet/create", $$$"""{"proplet_id":"{{{good}}}","metadata":{"hostname":"host"}}"""),
            ],
            Ct);

        (await Http.GetAsync($"/proplets/{bad}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await Http.GetAsync($"/proplets/{good}", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var warnings = _server.Warnings.ToString();
        warnings.ShouldContain("strings cannot hold a NUL character");
        warnings.ShouldNotContain("22P05");
    }
}
