global using Propeller.Edge.Tests;
