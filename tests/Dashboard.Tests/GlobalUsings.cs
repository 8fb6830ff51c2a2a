global using Propeller.Cli.Tests;
global using Propeller.EndToEnd.Tests;
global using Propeller.Plugins.Tests.Support;
