using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Propeller.Manager.Http;

/// <summary>
/// Refuses a browser's cross-origin request that changes something (POST, PUT, PATCH, DELETE), so that a web page on
/// another site cannot use an operator's browser to start, stop or delete tasks or reload plugins: the API has no login
/// and no token to forge, and a form post or a body-less POST needs no CORS preflight. The check is the Fetch Metadata
/// one of Go 1.25's <c>http.CrossOriginProtection</c>, which ASP.NET Core ships as its default CSRF protection from .NET
/// 11 on (ADR 0020): safe methods and trusted origins pass; a <c>Sec-Fetch-Site</c> of <c>same-origin</c> or <c>none</c>
/// passes and any other value is refused; without it, an <c>Origin</c> must name the request's own host; a request with
/// neither header (curl, the CLI, SDKs, other servers) passes. A refusal is a 403 <c>{"error"}</c> and a log line.
/// A browser's request (one with <c>Sec-Fetch-Site</c> or <c>Origin</c>), a read too, must also name a known host in
/// <c>Host</c> unless its origin is trusted: a page of <c>http://evil.example:7070</c> whose name is rebound to the
/// manager's address is same-origin to itself, so only its Host header tells it apart (DNS rebinding; ADR 0020). Over
/// plain HTTP a browser's same-origin read carries neither header: with MANAGER_HTTP_ALLOWED_HOSTS set, every request's
/// Host is checked.
/// </summary>
internal static partial class CrossOriginProtection
{
    public static IApplicationBuilder UseCrossOriginProtection(
        this IApplicationBuilder app, IReadOnlyCollection<string> trustedOrigins, IReadOnlyCollection<string> allowedHosts, string listenHost)
    {
        var trusted = new HashSet<string>(trustedOrigins, StringComparer.OrdinalIgnoreCase);
        var logger = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(CrossOriginProtection));
        // The addresses listened on are known once the server has started, before the first request.
        // Named in MANAGER_HTTP_ALLOWED_HOSTS (not *): every request's Host is checked, as ASP.NET Core's host filtering
        // does. Over plain HTTP a browser sends no Sec-Fetch-Site (only to trustworthy origins: https, localhost) and no
        // Origin on a same-origin GET, so a rebound page's reads look like any other client's and only this catches them.
        var strict = allowedHosts.Count > 0 && !allowedHosts.Contains("*");
        var hosts = new Lazy<HashSet<string>>(() =>
        {
            var known = KnownHosts(allowedHosts, listenHost, app.ServerFeatures.Get<IServerAddressesFeature>()?.Addresses ?? []);
            KnownHostsAre(logger, strict ? "every request" : "a browser's request", string.Join(", ", known.Order(StringComparer.OrdinalIgnoreCase)));
            return known;
        });
        return app.Use((context, next) =>
        {
            var request = context.Request;
            if (!HostAllowed(request, trusted, hosts.Value, strict))
            {
                HostRefused(logger, request.Method, request.Path, request.Host.Value ?? "", request.Headers.Origin.ToString(), request.Headers["Sec-Fetch-Site"].ToString());
                return ApiResults.Error(
                    StatusCodes.Status403Forbidden,
                    $"cross-origin request refused: host '{request.Host.Value}' is not allowed{(strict ? "" : " for a browser")} (MANAGER_HTTP_ALLOWED_HOSTS lists the names the manager is reached by)")
                    .ExecuteAsync(context);
            }

            if (Allows(request, trusted))
            {
                return next(context);
            }

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

    /// <summary>
    /// Whether a request may be answered by its Host: one from a trusted origin always, and (unless
    /// <paramref name="strict"/>) one that is not a browser's (no <c>Sec-Fetch-Site</c>, no <c>Origin</c>); else when its
    /// host is an IP address (a page served by that address is the manager's own: rebinding needs a name),
    /// <c>localhost</c>, or in <paramref name="knownHosts"/> (or that holds <c>*</c>). The port is not compared: the
    /// rebinding page uses the manager's own.
    /// </summary>
    internal static bool HostAllowed(HttpRequest request, IReadOnlySet<string> trustedOrigins, IReadOnlySet<string> knownHosts, bool strict = false)
    {
        var origin = request.Headers.Origin.ToString();
        if ((!strict && origin.Length == 0 && request.Headers["Sec-Fetch-Site"].ToString().Length == 0) || trustedOrigins.Contains(origin) || knownHosts.Contains("*"))
        {
            return true;
        }

        var host = request.Host.Host.TrimEnd('.');
        return IPAddress.TryParse(host.Trim('[', ']'), out _)
            || string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)
            || knownHosts.Contains(host);
    }

    /// <summary>MANAGER_HTTP_ALLOWED_HOSTS, MANAGER_HTTP_HOST, the hosts of the addresses listened on and the machine's name.</summary>
    internal static HashSet<string> KnownHosts(IEnumerable<string> allowedHosts, string listenHost, IEnumerable<string> listenAddresses)
    {
        var hosts = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { listenHost };
        foreach (var address in listenAddresses)
        {
            // Kestrel's wildcards (http://+:7070, http://*:7070) are not URIs; a wildcard is no name to add.
            if (Uri.TryCreate(address.Replace("://+", "://wildcard.invalid", StringComparison.Ordinal).Replace("://*", "://wildcard.invalid", StringComparison.Ordinal), UriKind.Absolute, out var uri))
            {
                hosts.Add(uri.Host);
            }
        }

        try
        {
            hosts.Add(Dns.GetHostName());
        }
        catch (SocketException)
        {
            // no name to add
        }

        // MANAGER_HTTP_HOST=* or + (every address) names no host; only MANAGER_HTTP_ALLOWED_HOSTS=* allows every one.
        hosts.Remove("*");
        hosts.Remove("+");
        hosts.UnionWith(allowedHosts.Select(h => h.TrimEnd('.')));
        return hosts;
    }

    /// <summary>An origin for MANAGER_HTTP_TRUSTED_ORIGINS as browsers send it (<c>scheme://host[:port]</c>), or null.</summary>
    internal static string? Normalize(string origin) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/" && uri.Query.Length == 0
            && uri.Fragment.Length == 0 && uri.UserInfo.Length == 0 && !origin.EndsWith('/')
            ? uri.GetLeftPart(UriPartial.Authority)
            : null;

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Refused a cross-origin {Method} {Path} from a browser (Origin '{Origin}', Sec-Fetch-Site '{Site}'); MANAGER_HTTP_TRUSTED_ORIGINS lists the origins allowed")]
    private static partial void Refused(ILogger logger, string method, string path, string origin, string site);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Information, Message = "The Host of {Which} must be an IP address, localhost or one of: {Hosts} (MANAGER_HTTP_ALLOWED_HOSTS adds names)")]
    private static partial void KnownHostsAre(ILogger logger, string which, string hosts);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "Refused a browser's {Method} {Path} to host '{Host}' (Origin '{Origin}', Sec-Fetch-Site '{Site}'): a name the manager is not known by (DNS rebinding?); MANAGER_HTTP_ALLOWED_HOSTS lists the names allowed")]
    private static partial void HostRefused(ILogger logger, string method, string path, string host, string origin, string site);
}
