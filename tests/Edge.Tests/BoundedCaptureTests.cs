using System.Text;
using Propeller.Edge.Execution;

namespace Propeller.Edge.Tests;

/// <summary>A task's output kept up to its limit (PROPLET_TASK_OUTPUT_LIMIT).</summary>
public sealed class BoundedCaptureTests
{
    /// <summary>A cut through a multi-byte character leaves the character out instead of ending in U+FFFD, and the text
    /// stays within the limit.</summary>
    [Theory]
    [InlineData("é", 4095)]
    [InlineData("€", 4096)]
    [InlineData("€", 4097)]
    [InlineData("😀", 4094)]
    [InlineData("😀", 4095)]
    public void GivenOutputCutInsideACharacter_WhenRead_ThenTheSplitCharacterIsLeftOut(string character, int limit)
    {
        var capture = new BoundedCapture(limit);
        capture.Append(Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(character, 3000))));

        var text = capture.ToString();

        capture.Truncated.ShouldBeTrue();
        text.ShouldNotEndWith("\uFFFD");
        text.Replace(character, "", StringComparison.Ordinal).ShouldBeEmpty();
        Encoding.UTF8.GetByteCount(text).ShouldBeInRange(limit - 3, limit);
    }

    /// <summary>Output within the limit is kept as written, invalid bytes included (decoded as U+FFFD).</summary>
    [Fact]
    public void GivenOutputWithinTheLimit_WhenRead_ThenItIsKeptWhole()
    {
        var capture = new BoundedCapture(16);
        capture.Append([.. "ab"u8, 0xC3]);

        capture.ToString().ShouldBe("ab\uFFFD");
        capture.Truncated.ShouldBeFalse();
    }
}
