global using Propeller.EndToEnd.Tests;
