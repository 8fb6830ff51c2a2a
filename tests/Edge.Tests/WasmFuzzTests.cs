using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>
/// Broken .wasm binaries against the proplet's runtime, seeded: modules and a component that work, mutated (bits flipped,
/// bytes overwritten, cut short, a run of bytes removed, repeated or inserted, a section's length changed), run with a
/// name and inputs drawn at random. Each must end as an outcome (a result, or an error that says something), never as an
/// exception out of the runtime, within the fuel, memory and time limits; the runtime must run a sound module
/// afterwards. PROPELLER_FUZZ_SEED and PROPELLER_FUZZ_BINARIES repeat a run or make it longer.
/// </summary>
public sealed class WasmFuzzTests : IDisposable
{
    private static readonly string[] Names = ["main", "_start", "add", "half", "neg64", "nothing", "run", "", "no-such-export"];

    private static readonly string[] Inputs = ["0", "1", "-1", "2.5", "inf", "nan", "9223372036854775807", "99999999999999999999", "x", "", "[1]", "\"s\""];

    private readonly InProcessRuntime _runtime = new(TestSettings.Create(), NullLogger<InProcessRuntime>.Instance);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _runtime.Dispose();

    [Fact]
    public async Task MutatedBinaries_EndAsOutcomes_AndTheRuntimeRunsASoundModuleAfterwards()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_SEED"), out var s) ? s : Random.Shared.Next();
        var binaries = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_FUZZ_BINARIES"), out var n) ? n : 300;
        var random = new Random(seed);
        byte[][] sound = [Modules.Addition, Modules.Numbers, Modules.Hello, Modules.ExitThree, Modules.Trap, Modules.Grow, Components.Calculator];
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < binaries; i++)
        {
            var binary = Mutate(sound[random.Next(sound.Length)], random);
            var name = Names[random.Next(Names.Length)];
            var inputs = Enumerable.Range(0, random.Next(0, 4)).Select(_ => Inputs[random.Next(Inputs.Length)]).ToArray();
            using var task = new RunningTask(new StartRequest(
                new StartMessage { Id = Guid.NewGuid().ToString(), Name = name, Inputs = inputs },
                new TaskLimits(Fuel: 20_000_000, MaxMemoryMib: 64, Timeout: TimeSpan.FromSeconds(2)),
                MonitoringProfile.Standard));
            // The runner ends a task at its timeout; here the test does (a mutated module may loop, or sleep in WASI).
            using var timeout = new Timer(_ => task.Abort(StopReason.TimedOut), null, TimeSpan.FromSeconds(3), Timeout.InfiniteTimeSpan);

            TaskOutcome outcome;
            try
            {
                outcome = await _runtime.RunAsync(task, binary, Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new ShouldAssertException($"seed {seed}, binary {i} ({name}, [{string.Join(", ", inputs)}]): {e}\n{Convert.ToBase64String(binary)}", e);
            }

            if (outcome.Error is { } error)
            {
                error.Trim().ShouldNotBeEmpty($"seed {seed}, binary {i}: an error that says nothing");
                var kind = error.Length > 40 ? error[..40] : error;
                outcomes[kind] = outcomes.GetValueOrDefault(kind) + 1;
            }
            else
            {
                outcomes["result"] = outcomes.GetValueOrDefault("result") + 1;
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}, {binaries} binaries:\n" + string.Join("\n", outcomes.OrderByDescending(p => p.Value).Select(p => $"{p.Value,5} {p.Key}")));
        using var sane = new RunningTask(new StartRequest(new StartMessage { Id = Guid.NewGuid().ToString(), Name = "main", Inputs = ["10", "32"] }, new TaskLimits(null, null, null), MonitoringProfile.Standard));
        (await _runtime.RunAsync(sane, Modules.Addition, Ct)).ShouldBe(TaskOutcome.Success("42"));
    }

    /// <summary>One to four mutations of <paramref name="binary"/>, past its 8-byte header mostly (a broken header is one
    /// error only).</summary>
    private static byte[] Mutate(byte[] binary, Random random)
    {
        var bytes = new List<byte>(binary);
        for (var m = random.Next(1, 5); m > 0 && bytes.Count > 0; m--)
        {
            var at = random.Next(0, 10) == 0 ? random.Next(bytes.Count) : Math.Min(bytes.Count - 1, 8 + random.Next(Math.Max(1, bytes.Count - 8)));
            switch (random.Next(7))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes[at] = Pick(random, [0x00, 0x01, 0x7f, 0x80, 0xff, (byte)random.Next(256)]);
                    break;
                case 2:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 3:
                    bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 16)));
                    break;
                case 4:
                    var run = bytes.GetRange(at, Math.Min(bytes.Count - at, random.Next(1, 32)));
                    bytes.InsertRange(at, run);
                    break;
                case 5:
                    bytes.InsertRange(at, Enumerable.Range(0, random.Next(1, 8)).Select(_ => (byte)random.Next(256)));
                    break;
                default:
                    // A LEB128 length nearby made large (a section or vector that claims more than there is).
                    bytes[at] = (byte)(bytes[at] | 0x80);
                    if (at + 1 < bytes.Count)
                    {
                        bytes[at + 1] = 0x7f;
                    }

                    break;
            }
        }

        return [.. bytes];
    }

    private static byte Pick(Random random, byte[] items) => items[random.Next(items.Length)];
}
