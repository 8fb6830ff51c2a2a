namespace Propeller.Tests.Shared;

/// <summary>
/// A settings loader that reads its environment through a function (the proplet's, the proxy's), fuzzed: the variables
/// it reads are found by asking it, then given values drawn at random one to three at a time, seeded. Each draw must
/// load or be refused with the loader's own exception (<paramref name="refused"/>), never another: the process would
/// print a stack trace instead of the setting's name.
/// </summary>
internal static class SettingsFuzz
{
    private static readonly string[] Values =
    [
        "", " ", "0", "1", "-1", "true", "false", "yes", "no", "5", "3.1.1", "4", "1.5", "1e999", "99999999999999999999", "5s", "0s", "-5s",
        "100000h", "1ms", "abc", "tcp://127.0.0.1:1", "ssl://x:8883", "mqtt://", "http://[::1]:99999", "/nonexistent/file", "\u0000", "é漢字",
        "a,b,,c", new string('x', 3000),
    ];

    /// <summary>Runs <paramref name="draws"/> draws; returns how many variables the loader reads and how many draws loaded.</summary>
    public static (int Variables, int Loaded) Run(
        Action<Func<string, string?>> load, IReadOnlyDictionary<string, string> identity, Func<Exception, bool> refused, int seed, int draws = 3000)
    {
        var asked = new HashSet<string>(StringComparer.Ordinal);
        load(name =>
        {
            asked.Add(name);
            return identity.GetValueOrDefault(name);
        });

        var random = new Random(seed);
        var loaded = 0;
        for (var i = 0; i < draws; i++)
        {
            var env = new Dictionary<string, string>(identity, StringComparer.Ordinal);
            // One to three at a time: with more, nearly every draw is refused at its first bad value.
            foreach (var name in asked.OrderBy(_ => random.Next()).Take(random.Next(1, 4)))
            {
                env[name] = Values[random.Next(Values.Length)];
            }

            try
            {
                load(name => env.GetValueOrDefault(name));
                loaded++;
            }
            catch (Exception e) when (refused(e))
            {
                if (string.IsNullOrWhiteSpace(e.Message))
                {
                    throw new InvalidOperationException($"seed {seed}, draw {i}: refused without a reason", e);
                }
            }
            catch (Exception e)
            {
                var drawn = env.Where(p => !identity.ContainsKey(p.Key)).Select(p => $"{p.Key}={(p.Value.Length > 40 ? p.Value[..40] + "..." : p.Value)}");
                throw new InvalidOperationException($"seed {seed}, draw {i}: {e.GetType().Name}: {e.Message}\n{string.Join("\n", drawn)}", e);
            }
        }

        return (asked.Count, loaded);
    }
}
