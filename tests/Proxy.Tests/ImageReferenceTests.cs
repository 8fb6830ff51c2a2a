using Propeller.Proxy.Oci;

namespace Propeller.Proxy.Tests;

public sealed class ImageReferenceTests
{
    [Theory]
    [InlineData("ghcr.io/org/add.wasm:v1", "ghcr.io", "org/add.wasm", "v1", null)]
    [InlineData("127.0.0.1:5000/demo/add", "127.0.0.1:5000", "demo/add", "latest", null)]
    [InlineData("localhost/add:1.0", "localhost", "add", "1.0", null)]
    [InlineData("docker.io/user/add.wasm:v1", "docker.io", "user/add.wasm", "v1", null)]
    [InlineData("user/add:v2", "docker.io", "user/add", "v2", null)]
    [InlineData("hello", "docker.io", "library/hello", "latest", null)]
    [InlineData("reg.local/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "reg.local", "a/b/c", null, "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    public void GivenAReference_WhenParsed_ThenHostRepositoryAndVersionAreItsOwn(string text, string host, string repository, string? tag, string? digest)
    {
        var reference = ImageReference.Parse(text);

        reference.Host.ShouldBe(host);
        reference.Repository.ShouldBe(repository);
        reference.Tag.ShouldBe(tag);
        reference.Digest.ShouldBe(digest);
        reference.Version.ShouldBe(digest ?? tag);
    }

    [Fact]
    public void GivenDockerHub_WhenAddressed_ThenItsApiHostIsUsed()
    {
        ImageReference.Parse("docker.io/user/add:v1").ApiHost.ShouldBe("registry-1.docker.io");
        ImageReference.Parse("ghcr.io/user/add:v1").ApiHost.ShouldBe("ghcr.io");
    }

    [Theory]
    [InlineData("", "it is empty")]
    [InlineData("reg.local/Upper/case:v1", "the repository 'Upper/case'")]
    [InlineData("reg.local/add:-bad", "the tag '-bad'")]
    [InlineData("reg.local/add@sha256:xyz", "the digest 'sha256:xyz'")]
    [InlineData("not a reference!!", "the repository")]
    [InlineData("reg_bad.local:99999x/add", "the registry host")]
    [InlineData("host:99999/x", "the registry host 'host:99999' is not host[:port] (a port from 0 to 65535")] // Uri refused it at the first request
    [InlineData("[:::]/x", "the registry host '[:::]' is not host[:port]")]
    public void GivenABadReference_WhenParsed_ThenTheErrorSaysWhatIsWrong(string text, string problem)
    {
        ImageReference.TryParse(text, out _, out var error).ShouldBeFalse();

        error.ShouldStartWith($"'{text}' is not an image reference host/repository[:tag|@digest]");
        error.ShouldContain(problem);
    }

    /// <summary>The error repeated the text whole, of any length, in the failure published to the proplets and logged.</summary>
    [Fact]
    public void GivenAVeryLongText_WhenParsed_ThenTheErrorShowsOnlyItsStart()
    {
        var text = "reg.local/" + new string('a', 100_000);

        ImageReference.TryParse(text, out _, out var error).ShouldBeFalse();

        error.ShouldBe($"'{text[..200]}…' is not an image reference host/repository[:tag|@digest]: it is longer than 1024 characters");
    }
}
