using System.Net;
using Propeller.Contracts.Configuration;

namespace Propeller.Proxy.Configuration;

/// <summary>Which registries are spoken to over plain HTTP (PROXY_PLAIN_HTTP), for the proxy and for
/// <c>propeller-proxy push</c> alike: loopback hosts always (as docker treats localhost); every host when the value is
/// true (1, true, yes, on, any case); the listed <c>host[:port]</c>s when it is a comma-separated list; none more when it
/// is false or unset.</summary>
public sealed class PlainHttpPolicy
{
    private readonly bool _everywhere;
    private readonly HashSet<string> _hosts;

    private PlainHttpPolicy(bool everywhere, IEnumerable<string> hosts)
    {
        _everywhere = everywhere;
        _hosts = new HashSet<string>(hosts, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Loopback registries only.</summary>
    public static PlainHttpPolicy LoopbackOnly { get; } = new(false, []);

    public static PlainHttpPolicy Parse(string? value)
    {
        var text = value?.Trim();
        if (string.IsNullOrEmpty(text) || Flags.IsFalse(text))
        {
            return LoopbackOnly;
        }

        return Flags.IsTrue(text)
            ? new PlainHttpPolicy(true, [])
            : new PlainHttpPolicy(false, text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    /// <summary>True when the registry at <paramref name="host"/> (host[:port], as in an image reference) is spoken to
    /// over plain HTTP.</summary>
    public bool Allows(string host)
    {
        if (_everywhere || _hosts.Contains(host))
        {
            return true;
        }

        var name = host.StartsWith('[') ? host[..(host.IndexOf(']', StringComparison.Ordinal) + 1)] : host.Split(':')[0];
        return name.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            || (IPAddress.TryParse(name.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));
    }
}
