using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>A proplet's message holding U+0000, a lone surrogate or a number beyond numeric's range is dropped as malformed
/// before PostgreSQL sees it (see NulValueTests).</summary>
public partial class DispatchTests
{
    [Fact]
    public async Task GivenDiscoveriesAndAHeartbeatWithValuesPostgresCannotStore_WhenHandled_ThenTheyAreDroppedAsMalformedAndAGoodOneBesideIsRegistered()
    {
        var (bad, surrogate, huge, good) = (Guid.NewGuid().ToString(), Guid.NewGuid().ToString(), Guid.NewGuid().ToString(), Guid.NewGuid().ToString());
        ReceivedMessage Message(string path, string json) => new($"{Base}/{path}", Encoding.UTF8.GetBytes(json), MqttQualityOfServiceLevel.AtLeastOnce, Retain: false, Duplicate: false);

        await _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().AcceptBatchAsync(
            [
                Message("control/proplet/create", $$$"""{"proplet_id":"{{{bad}}}","metadata":{"hostname":"h\u0000st"}}"""),
                Message("control/proplet/alive", """{"proplet_id":"p\u0000","status":"alive"}"""),
                Message("control/proplet/create", $$$"""{"proplet_id":"{{{surrogate}}}","metadata":{"hostname":"h\udc00st"}}"""),
                Message("control/proplet/create", $$$"""{"proplet_id":"{{{huge}}}","metadata":{"hostname":"host","n":1e200000}}"""),
                Message("control/proplet/create", $$$"""{"proplet_id":"{{{good}}}","metadata":{"hostname":"host"}}"""),
            ],
            Ct);

        foreach (var refused in new[] { bad, surrogate, huge })
        {
            (await Http.GetAsync($"/proplets/{refused}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        }

        (await Http.GetAsync($"/proplets/{good}", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var warnings = _server.Warnings.ToString();
        warnings.ShouldContain(@"its values must not contain \u0000");
        warnings.ShouldContain("its values must be valid Unicode");
        warnings.ShouldContain("its values holds a number beyond");
        warnings.ShouldNotContain("22P05");
        warnings.ShouldNotContain("22003");
    }
}
