using Microsoft.Extensions.FileProviders;

namespace Propeller.Manager.Dashboard;

/// <summary>
/// The operator's dashboard under <c>/ui</c> (docs/dashboard.md): static HTML, CSS and JavaScript modules from
/// Dashboard/wwwroot, embedded in the manager's assembly (no build step, nothing fetched at run time). It uses the
/// HTTP API only, and <c>/events</c> for live updates.
/// </summary>
internal static class DashboardEndpoints
{
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
            // Revalidate every time: a new manager version must not run with a browser's cached old modules.
            OnPrepareResponse = context => context.Context.Response.Headers.CacheControl = "no-cache",
        });
        return app;
    }
}
