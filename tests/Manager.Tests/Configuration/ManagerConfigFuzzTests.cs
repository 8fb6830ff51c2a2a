using Microsoft.Extensions.Configuration;
using Propeller.Manager.Configuration;

namespace Propeller.Manager.Tests.Configuration;

/// <summary>
/// Every setting the manager reads (found by asking its loader), given values drawn at random one to three at a time,
/// seeded: the configuration loads or is refused with one <see cref="ManagerConfigurationException"/>, never another
/// exception (the process would print a stack trace instead of the setting's name). PROPELLER_FUZZ_SEED repeats a run.
/// </summary>
public sealed class ManagerConfigFuzzTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("manager-config-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EverySetting_WithValuesDrawnAtRandom_LoadsOrIsRefusedWithAManagerConfigurationException()
    {
        var recorder = new Recorder();
        ManagerConfig.Load(new ConfigurationBuilder().Add(recorder).Build(), _dir);
        var asked = recorder.Asked.Where(k => !k.Contains(':', StringComparison.Ordinal) || k.StartsWith("EventStore:", StringComparison.Ordinal)).ToList();
        asked.Count.ShouldBeGreaterThan(30);

        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();
        var random = new Random(seed);
        string[] values = [.. Fuzz.Strings, "5", "3.1.1", "tcp://127.0.0.1:1", "ssl://x:8883", "0.0.0.0", "65536", "-5s", "100000h", "1ms", "a,b,,c", "/nonexistent/dir"];
        var loaded = 0;
        for (var i = 0; i < 3000; i++)
        {
            var settings = asked.OrderBy(_ => random.Next()).Take(random.Next(1, 4)).ToDictionary(k => k, _ => (string?)Fuzz.Pick(random, values), StringComparer.Ordinal);
            try
            {
                ManagerConfig.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build(), _dir);
                loaded++;
            }
            catch (ManagerConfigurationException e)
            {
                e.Message.ShouldNotBeNullOrWhiteSpace();
            }
            catch (Exception e)
            {
                throw new ShouldAssertException(
                    $"seed {seed}, draw {i}: {e.GetType().Name}: {e.Message}\n{string.Join("\n", settings.Select(p => $"{p.Key}={(p.Value!.Length > 40 ? p.Value[..40] + "..." : p.Value)}"))}", e);
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}: {asked.Count} settings, {loaded} of 3000 draws loaded");
    }

    /// <summary>A configuration source that holds nothing and remembers every key it is asked for.</summary>
    private sealed class Recorder : ConfigurationProvider, IConfigurationSource
    {
        public HashSet<string> Asked { get; } = new(StringComparer.Ordinal);

        public IConfigurationProvider Build(IConfigurationBuilder builder) => this;

        public override bool TryGet(string key, out string? value)
        {
            Asked.Add(key);
            value = null;
            return false;
        }
    }
}
