namespace Propeller.Broker.Tests;

/// <summary>The in-flight window resized at each connect to the broker's Receive Maximum (pitfall 1).</summary>
public sealed class InflightWindowTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// Every permit in use (16 publishes in flight, a 17th waiting), a connect shrinks the window to 10 and the next one
    /// grows it back to 16 before any publish ended: the 17th still waits, and once they end, 16 permits are free, no
    /// more. Before, the grow released 6 permits while the shrink still waited to take its 6 out: the 17th publish took
    /// one of them (in flight above the broker's Receive Maximum, which an MQTT 5 broker answers by closing the
    /// connection) until the shrink caught up.
    /// </summary>
    [Fact]
    public async Task GivenEveryPermitInUse_WhenTheWindowShrinksAndGrowsBack_ThenNoMoreThanItsSizeAreInFlight()
    {
        using var window = new InflightWindow(16, Ct);
        for (var i = 0; i < 16; i++)
        {
            await window.WaitAsync(Ct);
        }

        // Without a token, so that SemaphoreSlim hands back its own waiter, completed within the Release that frees it.
        var seventeenth = window.WaitAsync(CancellationToken.None);
        window.Resize(10);
        window.Resize(16);
        seventeenth.IsCompleted.ShouldBeFalse("17 in flight in a window of 16");

        window.Release();
        await seventeenth.WaitAsync(TestBroker.Timeout, Ct);
        for (var i = 0; i < 16; i++)
        {
            window.Release();
        }

        for (var i = 0; i < 16; i++)
        {
            await window.WaitAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        }

        window.Available.ShouldBe(0, "16 in flight, none more");
    }

    /// <summary>A shrink with permits in use takes them out as the publishes end, and no more than it owes.</summary>
    [Fact]
    public async Task GivenPermitsInUse_WhenTheWindowShrinks_ThenItTakesThemOutAsPublishesEnd()
    {
        using var window = new InflightWindow(16, Ct);
        for (var i = 0; i < 16; i++)
        {
            await window.WaitAsync(Ct);
        }

        window.Resize(10);
        for (var i = 0; i < 16; i++)
        {
            window.Release();
        }

        for (var i = 0; i < 10; i++)
        {
            await window.WaitAsync(Ct).WaitAsync(TestBroker.Timeout, Ct);
        }

        while (window.Owed > 0)
        {
            await Task.Delay(10, Ct);
        }

        window.Available.ShouldBe(0, "ten in use, six taken out");
        window.Resize(12);
        window.Available.ShouldBe(2);
    }
}
