using System.Text;
using System.Text.Json;
using Propeller.Contracts.Mqtt;
using Propeller.Infrastructure.Mqtt;

namespace Propeller.Infrastructure.Tests.Mqtt;

/// <summary>A proplet's message with a field of the wrong type is read without that field, as the original manager read it.</summary>
public sealed class LenientJsonTests
{
    [Fact]
    public void GivenWellTypedFields_ThenTheMessageIsReadWhole_AndNothingIsIgnored()
    {
        var result = LenientJson.Deserialize<ResultMessage>(Bytes("""{"task_id":"t","proplet_id":"p","results":"ok","attempt":2,"running":false}"""), out var ignored);

        ignored.ShouldBeEmpty();
        result.ShouldNotBeNull();
        result.Attempt.ShouldBe(2);
        result.Running.ShouldBe(false);
        result.PropletId.ShouldBe("p");
    }

    [Fact]
    public void GivenFieldsOfTheWrongType_ThenTheyAreLeftOut_AndTheRestIsRead()
    {
        var result = LenientJson.Deserialize<ResultMessage>(Bytes("""{"task_id":"t","proplet_id":7,"results":{"a":[1]},"attempt":"2","running":"yes","error":null}"""), out var ignored);

        ignored.ShouldBe(["proplet_id", "attempt", "running"], ignoreOrder: true);
        result.ShouldNotBeNull();
        result.TaskId.ShouldBe("t");
        result.PropletId.ShouldBeNull();
        result.Attempt.ShouldBeNull();
        result.Running.ShouldBeNull();
        result.Results!.Value.GetRawText().ShouldBe("""{"a":[1]}""");
    }

    [Fact]
    public void GivenAPositionalRecord_ThenAWrongTypedFieldIsLeftOutToo()
    {
        var alive = LenientJson.Deserialize<AliveMessage>(Bytes("""{"proplet_id":"p","status":"alive","namespace":["x"]}"""), out var ignored);

        ignored.ShouldBe(["namespace"]);
        alive.ShouldBe(new AliveMessage("p", "alive", null));
    }

    [Fact]
    public void GivenAFieldTwiceOneOfTheWrongType_ThenItIsLeftOut_AndNothingElseIsThrown()
    {
        var result = LenientJson.Deserialize<ResultMessage>(Bytes("""{"task_id":"t","attempt":"x","attempt":2,"results":"ok"}"""), out var ignored);

        ignored.ShouldBe(["attempt"]);
        result.ShouldNotBeNull();
        result.TaskId.ShouldBe("t");
        result.Attempt.ShouldBeNull();
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("""{"task_id":"t","attempt":tru}""")]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    public void GivenAPayloadThatIsNotAJsonObject_ThenItStillThrows(string payload) =>
        Should.Throw<JsonException>(() => LenientJson.Deserialize<ResultMessage>(Bytes(payload), out _));

    [Theory]
    [InlineData("[1,2]", "an array")]
    [InlineData("\"text\"", "a string")]
    [InlineData("42", "a number")]
    [InlineData("true", "a boolean")]
    public void GivenAPayloadOfAnotherKind_ThenTheErrorSaysWhatItIs(string payload, string kind) =>
        Should.Throw<JsonException>(() => LenientJson.Deserialize<ResultMessage>(Bytes(payload), out _)).Message
            .ShouldBe($"the payload must be a JSON object, not {kind}");

    [Theory]
    [InlineData("$.attempt", "attempt")]
    [InlineData("$.tags[0]", "tags")]
    [InlineData("$.metadata.hostname", "metadata")]
    [InlineData("$['odd name'].x", "odd name")]
    [InlineData("$", null)]
    [InlineData(null, null)]
    public void TheFieldOfAPath(string? path, string? field) => LenientJson.Field(path).ShouldBe(field);

    private static ReadOnlySpan<byte> Bytes(string text) => Encoding.UTF8.GetBytes(text);
}
