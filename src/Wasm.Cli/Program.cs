using Propeller.Wasm.Cli;

// propeller-wasm [OPTIONS] FILE.wasm [ARGS...]         runs a WASI program or --invoke NAME, like `wasmtime run`
// propeller-wasm spectest DIR [--known-failing FILE]   runs the wast2json spec suite under DIR
if (args.Length >= 2 && args[0] == "spectest")
{
    string? knownFailing = null;
    var filter = new List<string>();
    for (var i = 2; i < args.Length; i++)
    {
        if (args[i] == "--known-failing" && i + 1 < args.Length)
        {
            knownFailing = args[++i];
        }
        else
        {
            filter.Add(args[i]);
        }
    }

    return SpecTestRunner.Run(args[1], knownFailing, filter, Console.Out, Console.Error);
}

using var guestStdout = Console.OpenStandardOutput();
using var guestStderr = Console.OpenStandardError();
using var guestStdin = Console.OpenStandardInput();
return RunCommand.Run(args, Console.Out, Console.Error, guestStdout, guestStderr, guestStdin);
