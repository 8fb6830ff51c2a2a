using Propeller.Edge.Execution;
using Wasmtime;

namespace Propeller.Edge.Tests;

public sealed class ValueTextTests
{
    [Theory]
    [InlineData("10", 10)]
    [InlineData("-3", -3)]
    [InlineData("+7", 7)]
    [InlineData("2147483647", int.MaxValue)]
    [InlineData("-2147483648", int.MinValue)]
    public void GivenAStrictDecimal_WhenParsedAsI32_ThenItIsAccepted(string text, int expected)
    {
        ValueText.TryParse(ValueKind.Int32, text, out var value, out _).ShouldBeTrue();
        value.AsInt32().ShouldBe(expected);
    }

    [Theory]
    [InlineData("10.0", "invalid digit found in string")]
    [InlineData(" 1", "invalid digit found in string")]
    [InlineData("0x10", "invalid digit found in string")]
    [InlineData("", "cannot parse integer from empty string")]
    [InlineData("-", "invalid digit found in string")]
    [InlineData("4294967295", "number too large to fit in target type")]
    [InlineData("-2147483649", "number too small to fit in target type")]
    public void GivenAnythingElse_WhenParsedAsI32_ThenTheErrorIsTheOriginals(string text, string reason)
    {
        ValueText.TryParse(ValueKind.Int32, text, out _, out var error).ShouldBeFalse();
        error.ShouldBe($"Failed to parse '{text}' as i32: {reason}");
    }

    /// <summary>
    /// An integer of millions of digits is out of range at once: parsed with BigInteger (superlinear) it held a task's slot
    /// for seconds that neither a stop nor --timeout could end (the guest has not started). "At once" is measured against
    /// a parse of as many digits that stays linear (leading zeros, one significant digit) in the same test, not against
    /// the clock: the least of three runs each (what a pause or preemption spared), and a ratio far below BigInteger's
    /// hundredfold.
    /// </summary>
    [Fact]
    public void GivenAnIntegerOfMillionsOfDigits_WhenParsed_ThenItIsOutOfRangeAtOnce()
    {
        var huge = "1" + new string('0', 5_000_000);
        var zeros = new string('0', 5_000_000) + "7";

        ValueText.TryParse(ValueKind.Int64, huge, out _, out var tooLarge).ShouldBeFalse();
        ValueText.TryParse(ValueKind.Int32, "-" + huge, out _, out var tooSmall).ShouldBeFalse();
        ValueText.TryParse(ValueKind.Int32, zeros, out var leadingZeros, out _).ShouldBeTrue();
        tooLarge.ShouldEndWith("as i64: number too large to fit in target type");
        tooSmall.ShouldEndWith("as i32: number too small to fit in target type");
        leadingZeros.AsInt32().ShouldBe(7);

        var linear = LeastTime.Of(() => ValueText.TryParse(ValueKind.Int32, zeros, out _, out _).ShouldBeTrue());
        var outOfRange = LeastTime.Of(() => ValueText.TryParse(ValueKind.Int64, huge, out _, out _).ShouldBeFalse());
        TestContext.Current.TestOutputHelper?.WriteLine($"leading zeros: {linear.TotalMilliseconds} ms; out of range: {outOfRange.TotalMilliseconds} ms");
        outOfRange.ShouldBeLessThan(linear * 20, $"against {linear.TotalMilliseconds} ms for as many leading zeros");
    }

    [Theory]
    [InlineData("1.5", 1.5)]
    [InlineData("1e3", 1000)]
    [InlineData("-0", -0.0)]
    [InlineData(".5", 0.5)]
    [InlineData("5.", 5)]
    [InlineData("inf", double.PositiveInfinity)]
    [InlineData("-Infinity", double.NegativeInfinity)]
    public void GivenRustFloatSyntax_WhenParsedAsF64_ThenItIsAccepted(string text, double expected)
    {
        ValueText.TryParse(ValueKind.Float64, text, out var value, out _).ShouldBeTrue();
        value.AsDouble().ShouldBe(expected);
    }

    [Theory]
    [InlineData("1,5")]
    [InlineData("e5")]
    [InlineData("1e")]
    [InlineData("0x1p3")]
    [InlineData(" 1")]
    public void GivenOtherText_WhenParsedAsF64_ThenItIsAnInvalidFloatLiteral(string text)
    {
        ValueText.TryParse(ValueKind.Float64, text, out _, out var error).ShouldBeFalse();
        error.ShouldBe($"Failed to parse '{text}' as f64: invalid float literal");
        ValueText.TryParse(ValueKind.Float64, "nan", out var nan, out _).ShouldBeTrue();
        double.IsNaN(nan.AsDouble()).ShouldBeTrue();
    }

    [Fact]
    public void GivenAReferenceParameter_WhenParsed_ThenItIsUnsupported()
    {
        ValueText.TryParse(ValueKind.ExternRef, "x", out _, out var error).ShouldBeFalse();
        error.ShouldBe("Unsupported Wasm value type for arg 'x'");
    }

    [Theory]
    [InlineData(1.0, "1")]
    [InlineData(0.1, "0.1")]
    [InlineData(1e21, "1000000000000000000000")]
    [InlineData(1.5e-7, "0.00000015")]
    [InlineData(-2.5e20, "-250000000000000000000")]
    [InlineData(double.NaN, "NaN")]
    [InlineData(double.PositiveInfinity, "inf")]
    [InlineData(double.NegativeInfinity, "-inf")]
    public void GivenAnF64Result_WhenFormatted_ThenItReadsLikeRustDisplay(double value, string expected)
    {
        ValueText.Format(value).ShouldBe(expected);
    }

    [Fact]
    public void GivenIntegerAndF32Results_WhenFormatted_ThenTheyAreSignedDecimalsAndShortestFloats()
    {
        ValueText.Format(-5).ShouldBe("-5");
        ValueText.Format(long.MinValue).ShouldBe("-9223372036854775808");
        ValueText.Format(0.1f).ShouldBe("0.1");
        ValueText.Format(3f).ShouldBe("3");
    }
}
