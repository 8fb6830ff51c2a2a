using Microsoft.Extensions.FileProviders;

namespace Propeller.Manager.Dashboard;

/// <summary>
/// The operator's dashboard under <c>/ui</c> (docs/dashboard.md): static HTML, CSS and JavaScript modules from
/// Dashboard/wwwroot, embedded in the manager's assembly (no build step, nothing fetched at run time). It uses the
/// HTTP API only, and <c>/events</c> for live updates.
/// </summary>
internal static class DashboardEndpoints
{
    /// <summary>
    /// What the dashboard's pages may load and do: its own files and API only (the API is one level up, same origin), no
    /// inline script or style (it has none: task names, metadata and errors are data, put in text nodes), and no framing
    /// by another site, which could trick an operator into clicking Start, Stop or Delete (clickjacking). The manager
    /// has no login, so these guard the browser, not the API.
    /// </summary>
    internal const string ContentSecurityPolicy =
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    public static WebApplication UseDashboard(this WebApplication app)
    {
        var files = new ManifestEmbeddedFileProvider(typeof(DashboardEndpoints).Assembly, "Dashboard/wwwroot");
        // /ui → /ui/ so the modules' relative URLs resolve under /ui/ (not a route: routing treats both paths alike, and
        // the static file middleware leaves requests with an endpoint alone).
        app.Use((context, next) =>
        {
            if (context.Request.Path.Value == "/ui")
            {
                context.Response.Redirect(context.Request.PathBase + "/ui/" + context.Request.QueryString);
                return Task.CompletedTask;
            }

            return next(context);
        });
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files, RequestPath = "/ui" });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            RequestPath = "/ui",
            OnPrepareResponse = context =>
            {
                var headers = context.Context.Response.Headers;
                // Revalidate every time: a new manager version must not run with a browser's cached old modules.
                headers.CacheControl = "no-cache";
                headers.ContentSecurityPolicy = ContentSecurityPolicy;
                headers.XContentTypeOptions = "nosniff";
                headers.XFrameOptions = "DENY";
                headers["Referrer-Policy"] = "same-origin";
            },
        });
        return app;
    }
}
