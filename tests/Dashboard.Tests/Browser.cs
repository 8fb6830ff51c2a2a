using Microsoft.Playwright;

namespace Propeller.Dashboard.Tests;

/// <summary>
/// A real headless Chromium through Playwright: Debian's /usr/bin/chromium (scripts/tools.sh installs it), launched
/// with --headless --no-sandbox --disable-gpu; PROPELLER_CHROMIUM names another binary.
/// </summary>
internal sealed class Browser : IAsyncDisposable
{
    private readonly IPlaywright _playwright;

    private Browser(IPlaywright playwright, IBrowser chromium)
    {
        _playwright = playwright;
        Chromium = chromium;
    }

    public IBrowser Chromium { get; }

    public static string ExecutablePath => Environment.GetEnvironmentVariable("PROPELLER_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    public static async Task<Browser> LaunchAsync()
    {
        var playwright = await Playwright.CreateAsync();
        var chromium = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            Args = ["--headless", "--no-sandbox", "--disable-gpu"],
        });
        return new Browser(playwright, chromium);
    }

    /// <summary>A new page whose console errors and failed page scripts end up in <paramref name="errors"/>.</summary>
    public async Task<IPage> NewPageAsync(List<string> errors)
    {
        var page = await Chromium.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 860 } });
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                lock (errors)
                {
                    errors.Add(message.Text);
                }
            }
        };
        page.PageError += (_, error) =>
        {
            lock (errors)
            {
                errors.Add(error);
            }
        };
        return page;
    }

    public async ValueTask DisposeAsync()
    {
        await Chromium.DisposeAsync();
        _playwright.Dispose();
    }
}
