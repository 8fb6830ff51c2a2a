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

    /// <summary>
    /// JSON null reaches a string property whatever its annotation: an invoke result whose invocation_id is null failed
    /// the handler with a NullReferenceException (logged with its stack trace, as a fault of ours). It is ignored now, as
    /// an empty id is; a null task_id is ignored with its unknown id; a null results is malformed (spec §1.12: results
    /// must be a string).
    /// </summary>
    [Fact]
    public async Task GivenInvokeResultsWithNullFields_WhenHandled_ThenTheyAreIgnoredOrMalformed_NotAFailure()
    {
        ReceivedMessage Message(string json) => new($"{Base}/control/proplet/invoke_results", Encoding.UTF8.GetBytes(json), MqttQualityOfServiceLevel.AtLeastOnce, Retain: false, Duplicate: false);
        var task = Guid.NewGuid().ToString();

        await _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().AcceptBatchAsync(
            [
                Message($$"""{"task_id":"{{task}}","invocation_id":null,"proplet_id":"p","results":"1","error":null}"""),
                Message($$"""{"task_id":null,"invocation_id":"{{Guid.NewGuid()}}","results":"1"}"""),
                Message($$"""{"task_id":"{{task}}","invocation_id":"{{Guid.NewGuid()}}","results":null,"error":"boom"}"""),
            ],
            Ct);

        var warnings = _server.Warnings.ToString();
        warnings.ShouldNotContain("NullReferenceException");
        warnings.ShouldNotContain("Handling a message on");
        warnings.ShouldContain($"Dropped a malformed message on {Base}/control/proplet/invoke_results (acknowledged, counted in mqtt_malformed_messages): results must be a string");
        warnings.Split('\n').Count(w => w.Contains("malformed", StringComparison.Ordinal)).ShouldBe(1, warnings);
    }
}
