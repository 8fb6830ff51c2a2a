using System.Buffers.Text;

namespace Propeller.Manager.Tasks;

/// <summary>
/// A task's <c>file</c> read as the original reads it (Go's base64.StdEncoding, spec §1.3): CR and LF anywhere are
/// skipped, so the 76-column lines of GNU base64 are taken; any other whitespace is an error (Base64.IsValid alone
/// skips spaces and tabs too). The original stores the bytes and writes them back canonically, so the text kept here
/// has no line breaks and zero padding bits, as the upload route's Convert.ToBase64String makes it.
/// </summary>
internal static class Base64Text
{
    public static bool TryCanonical(string text, out string canonical)
    {
        ArgumentNullException.ThrowIfNull(text);
        canonical = text;
        if (text.AsSpan().IndexOfAny(' ', '\t') >= 0)
        {
            return false;
        }

        var stripped = text.AsSpan().IndexOfAny('\r', '\n') >= 0 ? text.Replace("\r", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal) : text;

        // Go ignores the unused bits of a padded last quantum ("QR==" reads as "QQ=="; Base64.IsValid refuses it):
        // re-encoding that quantum writes them as zero.
        if (stripped.Length >= 4 && stripped.EndsWith('='))
        {
            var last = stripped.AsSpan(stripped.Length - 4);
            Span<byte> bytes = stackalloc byte[3];
            if (!Base64.IsValid(last) && Convert.TryFromBase64Chars(last, bytes, out var written))
            {
                stripped = string.Concat(stripped.AsSpan(0, stripped.Length - 4), Convert.ToBase64String(bytes[..written]));
            }
        }

        if (!Base64.IsValid(stripped))
        {
            return false;
        }

        canonical = stripped;
        return true;
    }

    /// <summary>The canonical text, or the text as given when it is not base64 (the validator refuses it).</summary>
    public static string? CanonicalOrAsGiven(string? text) => text is not null && TryCanonical(text, out var canonical) ? canonical : text;
}
