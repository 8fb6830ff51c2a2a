namespace Propeller.Manager.Http;

/// <summary>
/// Refuses a browser's cross-origin request that changes something (POST, PUT, PATCH, DELETE), so that a web page on
/// another site cannot use an operator's browser to start, stop or delete tasks or reload plugins: the API has no login
/// and no token to forge, and a form post or a body-less POST needs no CORS preflight. The check is the Fetch Metadata
/// one of Go 1.25's <c>http.CrossOriginProtection</c>, which ASP.NET Core ships as its default CSRF protection from .NET
/// 11 on (ADR 0020): safe methods and trusted origins pass; a <c>Sec-Fetch-Site</c> of <c>same-origin</c> or <c>none</c>
/// passes and any other value is refused; without it, an <c>Origin</c> must name the request's own host; a request with
/// neither header (curl, the CLI, SDKs, other servers) passes. A refusal is a 403 <c>{"error"}</c> and a log line.
/// </summary>
internal static partial class CrossOriginProtection
{
    public static IApplicationBuilder UseCrossOriginProtection(this IApplicationBuilder app, IReadOnlyCollection<string> trustedOrigins)
    {
        var trusted = new HashSet<string>(trustedOrigins, StringComparer.OrdinalIgnoreCase);
        var logger = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(CrossOriginProtection));
        return app.Use((context, next) =>
        {
            if (Allows(context.Request, trusted))
            {
                return next(context);
            }

            var request = context.Request;
            Refused(logger, request.Method, request.Path, request.Headers.Origin.ToString(), request.Headers["Sec-Fetch-Site"].ToString());
            return ApiResults.Error(StatusCodes.Status403Forbidden, "cross-origin request refused: the manager's API changes nothing for a page of another site")
                .ExecuteAsync(context);
        });
    }

    internal static bool Allows(HttpRequest request, IReadOnlySet<string> trustedOrigins)
    {
        if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method) || HttpMethods.IsTrace(request.Method))
        {
            return true;
        }

        var origin = request.Headers.Origin.ToString();
        if (origin.Length > 0 && trustedOrigins.Contains(origin))
        {
            return true;
        }

        var site = request.Headers["Sec-Fetch-Site"].ToString();
        if (site.Length > 0)
        {
            return site is "same-origin" or "none";
        }

        return origin.Length == 0
            || (Uri.TryCreate(origin, UriKind.Absolute, out var uri) && string.Equals(uri.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>An origin for MANAGER_HTTP_TRUSTED_ORIGINS as browsers send it (<c>scheme://host[:port]</c>), or null.</summary>
    internal static string? Normalize(string origin) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/" && uri.Query.Length == 0
            && uri.Fragment.Length == 0 && uri.UserInfo.Length == 0 && !origin.EndsWith('/')
            ? uri.GetLeftPart(UriPartial.Authority)
            : null;

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Refused a cross-origin {Method} {Path} from a browser (Origin '{Origin}', Sec-Fetch-Site '{Site}'); MANAGER_HTTP_TRUSTED_ORIGINS lists the origins allowed")]
    private static partial void Refused(ILogger logger, string method, string path, string origin, string site);
}
