using Propeller.Cli;

return await CliApp.RunAsync(args, CliHost.FromConsole(), CancellationToken.None);
