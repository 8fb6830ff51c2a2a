namespace Propeller.Wasm.Cli;

/// <summary>`propeller-wasm [OPTIONS] FILE.wasm [ARGS...]`: the shared <see cref="Hosting.RunCommand"/> (also behind
/// `propeller-proplet run`).</summary>
internal static class RunCommand
{
    public static int Run(
        string[] args, TextWriter stdout, TextWriter stderr, Stream? guestStdout = null, Stream? guestStderr = null, Stream? guestStdin = null) =>
        Hosting.RunCommand.Run("propeller-wasm", args, stdout, stderr, guestStdout, guestStderr, guestStdin);
}
