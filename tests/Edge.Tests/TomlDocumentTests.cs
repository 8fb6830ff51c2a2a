using Propeller.Contracts.Configuration;

namespace Propeller.Edge.Tests;

public sealed class TomlDocumentTests
{
    [Fact]
    public void GivenSectionsAndValues_WhenParsed_ThenEachKeyHasItsTypedValue()
    {
        var document = TomlDocument.Parse("""
            # SuperMQ Configuration
            top = 1

            [manager]
            domain_id = "d-1"   # trailing comment

            [proplet]
            tenant_id = "t\u00e9\"x\""
            entity_id = 'C:\raw'
            port = 1_883
            ratio = 0.5
            enabled = true
            """);

        document.Section("")!["top"].ShouldBe(1L);
        document.Section("manager")!["domain_id"].ShouldBe("d-1");
        var proplet = document.Section("proplet")!;
        proplet["tenant_id"].ShouldBe("té\"x\"");
        proplet["entity_id"].ShouldBe(@"C:\raw");
        proplet["port"].ShouldBe(1883L);
        proplet["ratio"].ShouldBe(0.5);
        proplet["enabled"].ShouldBe(true);
        document.Section("proxy").ShouldBeNull();
    }

    [Theory]
    [InlineData("[proplet\nx = 1", "config.toml:1: expected a section header")]
    [InlineData("[proplet]\njust words", "config.toml:2: expected key = value")]
    [InlineData("a = \"open", "config.toml:1: unterminated string")]
    [InlineData("a = [1, 2]", "config.toml:1: arrays and inline tables are not supported")]
    [InlineData("a = bare", "config.toml:1: cannot read value 'bare' (strings need quotes)")]
    [InlineData("a = 1\na = 2", "config.toml:2: duplicate key 'a'")]
    [InlineData("a = \"x\\q\"", "config.toml:1: invalid escape \\q")]
    [InlineData("a = \"\\UFFFFFFFF\"", "config.toml:1: invalid \\U escape")]
    [InlineData("a = \"\\U80000000\"", "config.toml:1: invalid \\U escape")]
    public void GivenMalformedText_WhenParsed_ThenTheErrorNamesTheLine(string text, string expected)
    {
        Should.Throw<TomlException>(() => TomlDocument.Parse(text)).Message.ShouldStartWith(expected);
    }

    [Fact]
    public void GivenAMissingFile_WhenLoaded_ThenTheErrorSaysItIsNotAccessible()
    {
        var path = Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"), "config.toml");
        Should.Throw<TomlException>(() => TomlDocument.Load(path)).Message.ShouldStartWith($"config file '{path}' not accessible");
    }
}
