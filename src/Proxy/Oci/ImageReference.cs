using System.Text.RegularExpressions;

namespace Propeller.Proxy.Oci;

/// <summary>
/// An image reference <c>host/repository[:tag|@digest]</c> (the task's <c>image_url</c>). The host is the first path
/// component when it looks like one (a dot or a port, or <c>localhost</c>); otherwise the reference is on Docker Hub
/// (<c>docker.io</c>, one-component names under <c>library/</c>), as docker resolves it. Without tag or digest the tag
/// is <c>latest</c>. Unlike the original, the tag or digest named is the one pulled (it always pulled <c>latest</c>).
/// </summary>
public sealed partial record ImageReference(string Host, string Repository, string? Tag, string? Digest)
{
    /// <summary>The tag, or the digest when the reference names one (the manifest to ask for).</summary>
    public string Version => Digest ?? Tag ?? "latest";

    /// <summary>The registry's API host: Docker Hub's <c>docker.io</c> is served by <c>registry-1.docker.io</c>.</summary>
    public string ApiHost => ApiHostOf(Host);

    /// <summary>The API host of registry <paramref name="host"/> (host[:port], lower case): Docker Hub's names map to
    /// <c>registry-1.docker.io</c>, any other is its own.</summary>
    public static string ApiHostOf(string host) => host is "docker.io" or "index.docker.io" ? "registry-1.docker.io" : host;

    public static ImageReference Parse(string text)
    {
        if (!TryParse(text, out var reference, out var error))
        {
            throw new FormatException(error);
        }

        return reference;
    }

    /// <summary>The longest reference accepted, in characters.</summary>
    public const int MaxLength = 1024;

    public static bool TryParse(string? text, out ImageReference reference, out string error)
    {
        reference = null!;
        var input = text?.Trim() ?? "";
        // The text as given, cut short: the error is published to the proplets and logged, and the text may be of any length.
        var shown = text is { Length: > 200 } ? text[..200] + "…" : text;
        string Bad(string why) => $"'{shown}' is not an image reference host/repository[:tag|@digest]: {why}";
        if (input.Length is 0 or > MaxLength)
        {
            error = Bad(input.Length == 0 ? "it is empty" : $"it is longer than {MaxLength} characters");
            return false;
        }

        string? digest = null;
        var at = input.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = input[(at + 1)..];
            input = input[..at];
            if (!DigestPattern().IsMatch(digest))
            {
                error = Bad($"the digest '{digest}' is not algorithm:hex (sha256:<64 hex>)");
                return false;
            }
        }

        string? tag = null;
        var lastSlash = input.LastIndexOf('/');
        var colon = input.LastIndexOf(':');
        if (colon > lastSlash)
        {
            tag = input[(colon + 1)..];
            input = input[..colon];
            if (!TagPattern().IsMatch(tag))
            {
                error = Bad($"the tag '{tag}' is not 1-128 letters, digits, '_', '.' or '-' (not starting with '.' or '-')");
                return false;
            }
        }

        var firstSlash = input.IndexOf('/', StringComparison.Ordinal);
        string host;
        string repository;
        if (firstSlash > 0 && (input[..firstSlash].Contains('.', StringComparison.Ordinal) || input[..firstSlash].Contains(':', StringComparison.Ordinal) || input[..firstSlash] == "localhost"))
        {
            host = input[..firstSlash].ToLowerInvariant();
            repository = input[(firstSlash + 1)..];
            // The pattern lets through a port over 65535 and brackets of hex digits and colons that are no IPv6
            // address; Uri refused them when the first request was made, an "unexpected proxy error".
            if (!HostPattern().IsMatch(host) || !Uri.TryCreate($"https://{host}/", UriKind.Absolute, out _))
            {
                error = Bad($"the registry host '{host}' is not host[:port] (a port from 0 to 65535, an IPv6 address in brackets)");
                return false;
            }
        }
        else
        {
            host = "docker.io";
            repository = input.Contains('/', StringComparison.Ordinal) ? input : "library/" + input;
        }

        if (host is "docker.io" or "index.docker.io" && !repository.Contains('/', StringComparison.Ordinal))
        {
            repository = "library/" + repository;
        }

        if (!RepositoryPattern().IsMatch(repository))
        {
            error = Bad($"the repository '{repository}' is not lower-case path components of letters and digits separated by '.', '_', '__' or '-'");
            return false;
        }

        reference = new ImageReference(host, repository, digest is null ? tag ?? "latest" : tag, digest);
        error = "";
        return true;
    }

    public override string ToString() => $"{Host}/{Repository}{(Tag is null ? "" : ":" + Tag)}{(Digest is null ? "" : "@" + Digest)}";

    // The OCI distribution spec's grammar for names, tags and digests.
    [GeneratedRegex("^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryPattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex("^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")]
    private static partial Regex DigestPattern();

    [GeneratedRegex(@"^(?:[a-z0-9]([a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:]+\])(?::[0-9]{1,5})?$")]
    private static partial Regex HostPattern();
}
