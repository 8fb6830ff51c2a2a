using Propeller.Contracts.Configuration;
using Propeller.Edge.Configuration;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>
/// The proplet's configuration fuzzed, seeded: config.toml text with characters removed, changed or added and lines
/// repeated or swapped must parse or be refused with a <see cref="TomlException"/> naming where; every PROPLET_* variable
/// the loader reads (found by asking it), given values drawn at random, must load or be refused with a
/// <see cref="ConfigurationException"/>. Never another exception: the process would print a stack trace instead of
/// the reason. PROPELLER_FUZZ_SEED repeats a run.
/// </summary>
public sealed class ConfigFuzzTests
{
    private const string Sample = """
        # SuperMQ Configuration
        top = 1

        [manager]
        domain_id = "d-1"   # trailing comment
        client_id = "c-1"

        [proplet]
        tenant_id = "t\u00e9\"x\""
        entity_id = 'C:\raw'
        port = 1_883
        ratio = 0.5
        enabled = true
        api_key = "k"
        channel_id = "ch"

        [proxy]
        client_key = "\t\\"
        """;

    private const string Alphabet = "[]=\"'#\n\r\t\\.,{}_+-eE0123456789tfxu \u0000é漢";

    private static int Seed() => int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();

    [Fact]
    public void MutatedConfigToml_ParsesOrIsRefusedWithATomlException()
    {
        var seed = Seed();
        var random = new Random(seed);
        var parsed = 0;
        for (var i = 0; i < 5000; i++)
        {
            var text = Mutate(Sample, random);
            try
            {
                TomlDocument.Parse(text);
                parsed++;
            }
            catch (TomlException e)
            {
                e.Message.ShouldNotBeNullOrWhiteSpace();
            }
            catch (Exception e)
            {
                throw new ShouldAssertException($"seed {seed}, text {i}: {e.GetType().Name}: {e.Message}\n---\n{text}\n---", e);
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}: {parsed} of 5000 parsed");
    }

    [Fact]
    public void EveryPropletVariable_WithValuesDrawnAtRandom_LoadsOrIsRefusedWithAConfigurationException()
    {
        var seed = Seed();
        var (variables, loaded) = SettingsFuzz.Run(
            env => PropletSettingsLoader.Load(env),
            new Dictionary<string, string>(StringComparer.Ordinal) { ["PROPLET_TENANT_ID"] = "t", ["PROPLET_ENTITY_ID"] = "e", ["PROPLET_API_KEY"] = "k", ["PROPLET_CHANNEL_ID"] = "c" },
            e => e is ConfigurationException,
            seed);

        variables.ShouldBeGreaterThan(30);
        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}: {variables} variables, {loaded} of 3000 draws loaded");
    }

    private static string Mutate(string text, Random random)
    {
        var lines = text.Split('\n').ToList();
        for (var m = random.Next(1, 4); m > 0; m--)
        {
            var line = random.Next(lines.Count);
            var chars = lines[line];
            switch (random.Next(5))
            {
                case 0 when chars.Length > 0:
                    lines[line] = chars.Remove(random.Next(chars.Length), 1);
                    break;
                case 1:
                    lines[line] = chars.Insert(random.Next(chars.Length + 1), Alphabet[random.Next(Alphabet.Length)].ToString());
                    break;
                case 2 when chars.Length > 0:
                    lines[line] = chars[..random.Next(chars.Length)];
                    break;
                case 3:
                    lines.Insert(random.Next(lines.Count + 1), lines[line]);
                    break;
                default:
                    var other = random.Next(lines.Count);
                    (lines[line], lines[other]) = (lines[other], lines[line]);
                    break;
            }
        }

        return string.Join('\n', lines);
    }
}
