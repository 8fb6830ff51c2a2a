global using Propeller.Edge.Tests;
global using Propeller.Tests.Shared;
