
namespace Propeller.Contracts;

/// <summary>The original's paged lists: <c>{offset, limit, total, &lt;items&gt;}</c> under a route-specific key.</summary>
public static class PageJson
{
    public static Dictionary<string, object> Of<T>(string key, long offset, long limit, long total, IReadOnlyList<T> items) => new(StringComparer.Ordinal)
    {
        ["offset"] = offset,
        ["limit"] = limit,
        ["total"] = total,
        [key] = items,
    };
}
