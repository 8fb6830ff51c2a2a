global using Propeller.Edge.Tests;
global using Propeller.Wasm.Tests;
