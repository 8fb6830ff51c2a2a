namespace Propeller.Infrastructure.Proplets;

/// <summary>Readable two-word names for new proplets, like the original's surname pairs ("Connolly-Bateman").</summary>
internal static class PropletNames
{
    private static readonly string[] Words =
    [
        "Abbott", "Bateman", "Calloway", "Connolly", "Darrow", "Ellison", "Fairbanks", "Gouin", "Hartley", "Ingram",
        "Jarvis", "Kendrick", "Lockwood", "Marlowe", "Norwood", "Ogden", "Pemberton", "Quinlan", "Radcliffe", "Sinclair",
        "Thornton", "Underwood", "Vance", "Whitaker", "Wotherspoon", "Yardley", "Ashby", "Barlow", "Crane", "Dunmore",
    ];

    public static string Next() => $"{Words[Random.Shared.Next(Words.Length)]}-{Words[Random.Shared.Next(Words.Length)]}";
}
