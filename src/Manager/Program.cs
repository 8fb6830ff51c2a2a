using Propeller.Manager;
using Propeller.Manager.Configuration;
using Propeller.Manager.Operations;
using Propeller.Manager.Wolverine;
using JasperFx;

// `propeller-manager` runs the manager (scripts/demo.sh runs the end-to-end demo);
// `propeller-manager rebuild <projection>` rebuilds a Marten projection (docs/operations.md).
if (args.Length > 0 && args[0] == "rebuild")
{
    return await RebuildCommand.RunAsync(args[1..]);
}

if (args.Length > 0 && args[0] == "codegen")
{
    // `propeller-manager codegen write` (scripts/codegen.sh) pre-generates the Wolverine pipeline's handler code into
    // src/Manager/Internal/Generated, which runs in TypeLoadMode.Static (ADR 0014); `codegen preview` prints it.
    await using var codegenApp = ManagerApp.Build([], WolverinePipeline.ConfigureForCodegen, runDaemon: false);
    return await codegenApp.RunJasperFxCommands(args);
}

WebApplication app;
try
{
    app = ManagerApp.Build(args);
}
catch (ManagerConfigurationException ex)
{
    await Console.Error.WriteLineAsync($"propeller-manager: {ex.Message}");
    return 2;
}

await using (app)
{
    try
    {
        await app.RunAsync();
    }
    catch (Propeller.Infrastructure.MartenStore.EventStoreUnavailableException ex)
    {
        // PostgreSQL unreachable at start, or the schema could not be applied: one line naming the setting to check
        // (logged too), not an unhandled exception's stack trace and an abort.
        await Console.Error.WriteLineAsync($"propeller-manager: {ex.Message}");
        return 1;
    }
}

return 0;
