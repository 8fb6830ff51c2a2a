using System.Globalization;

namespace Propeller.Manager.Http;

/// <summary>The original's <c>offset</c> (default 0) and <c>limit</c> (default 100) query parameters: unsigned integers.</summary>
internal static class Paging
{
    public static bool TryRead(HttpRequest request, out ulong offset, out ulong limit) =>
        TryUnsigned(request, "offset", 0, out offset) & TryUnsigned(request, "limit", 100, out limit)
        && offset <= long.MaxValue && limit <= long.MaxValue; // the pages are counted in int64 (a larger offset wrapped to a negative one)

    private static bool TryUnsigned(HttpRequest request, string name, ulong fallback, out ulong value)
    {
        var raw = request.Query[name].FirstOrDefault();
        if (string.IsNullOrEmpty(raw))
        {
            value = fallback;
            return true;
        }

        return ulong.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}
