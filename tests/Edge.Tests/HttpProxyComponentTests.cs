using System.Text;
using Propeller.Tests.Shared;
using Propeller.WasmHost;
using Propeller.WasmHost.Components.Http;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>
/// The wasi:http host of ADR 0015 without the server: proxy.wat's <c>handle</c> on a fresh instance per request, each
/// answer read from what the component set through <c>response-outparam</c> and wrote to its body stream.
/// </summary>
public sealed class HttpProxyComponentTests : IDisposable
{
    private readonly HttpProxyComponent _proxy = HttpProxyComponent.Create(
        WasmEngine.Shared.Engine, new ModuleCache(WasmEngine.Shared).GetOrCompileComponent(Components.Proxy));

    public void Dispose() => _proxy.Dispose();

    [Theory]
    [InlineData("GET", "/", "", 200, "hello, world")]
    [InlineData("POST", "/echo?x=1", "ping pong, a body longer than one read", 200, "/echo?x=1 ping pong, a body longer than one read")]
    [InlineData("GET", "/method", "", 200, "0")]
    [InlineData("POST", "/method", "", 200, "2")]
    [InlineData("GET", "/teapot", "", 418, "teapot")]
    public void GivenTheProxyComponent_WhenARequestIsHandled_ThenTheResponseIsWhatTheComponentSet(string method, string path, string body, int status, string expected)
    {
        var response = Handle(method, path, body);

        response.Error.ShouldBeNull();
        response.Status.ShouldBe(status);
        Encoding.UTF8.GetString(response.Body).ShouldBe(expected);
        response.Headers.ShouldContain(h => h.Key == "content-type" && Encoding.ASCII.GetString(h.Value) == "text/plain");
    }

    [Fact]
    public void GivenARequestHeader_WhenTheComponentReadsIt_ThenItsValueComesBack()
    {
        var response = Handle("GET", "/header", "", [new("X-Echo", "from the client"u8.ToArray())]);

        response.Error.ShouldBeNull();
        Encoding.UTF8.GetString(response.Body).ShouldBe("from the client");
    }

    [Theory]
    [InlineData("/trap", "unreachable")]
    [InlineData("/none", "the component returned from handle without setting a response")]
    [InlineData("/exit", "wasi:cli/exit with err")]
    [InlineData("/outgoing", "unknown import: `wasi:http/outgoing-handler@0.2.0#handle` has not been defined")]
    public void GivenAFailingRequest_WhenHandled_ThenTheResponseIsAnErrorAndTheNextRequestIsServed(string path, string error)
    {
        Handle("GET", path, "").Error.ShouldNotBeNull().ShouldContain(error);
        Handle("GET", "/", "").Status.ShouldBe(200);
    }

    [Fact]
    public void GivenASpinningHandler_WhenItsFuelRunsOut_ThenTheResponseSaysSo()
    {
        Handle("GET", "/spin", "", fuel: 1_000_000).Error.ShouldNotBeNull().ShouldContain("all fuel consumed");
    }

    private HttpProxyResponse Handle(string method, string path, string body, KeyValuePair<string, byte[]>[]? headers = null, ulong fuel = ulong.MaxValue)
    {
        using var store = new Store(WasmEngine.Shared.Engine);
        store.Fuel = fuel;
        using var ticking = WasmEngine.Shared.Watch(store, () => { });
        return _proxy.Handle(
            store,
            new HttpProxyRequest(method, path, "http", "localhost", headers ?? [], Encoding.UTF8.GetBytes(body)),
            new HttpProxyOptions([], [], 1 << 20, CancellationToken.None));
    }
}
