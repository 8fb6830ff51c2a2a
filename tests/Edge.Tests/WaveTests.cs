using Propeller.WasmHost.Components;
using Wasmtime.Components;

namespace Propeller.Edge.Tests;

public sealed class WaveTests
{
    private static readonly WitType Point = new(WitKind.Record)
    {
        Cases = [new("x", WitType.Of(WitKind.S32)), new("y", WitType.Of(WitKind.S32)), new("label", new WitType(WitKind.Option) { Element = WitType.Of(WitKind.String) })],
    };

    private static readonly WitType Shape = new(WitKind.Variant)
    {
        Cases = [new("circle", WitType.Of(WitKind.F64)), new("square", WitType.Of(WitKind.U32)), new("empty", null), new("ok", null)],
    };

    private static readonly WitType Color = new(WitKind.Enum) { Cases = [new("red", null), new("green", null), new("blue", null)] };

    private static readonly WitType Perms = new(WitKind.Flags) { Cases = [new("read", null), new("write", null), new("exec", null)] };

    public static TheoryData<string, string, string> RoundTrips => new()
    {
        { "bool", "true", "true" },
        { "bool", " false ", "false" },
        { "s8", "-128", "-128" },
        { "u8", "255", "255" },
        { "s16", "-32768", "-32768" },
        { "u16", "65535", "65535" },
        { "s32", "-2147483648", "-2147483648" },
        { "u32", "4294967295", "4294967295" },
        { "s64", "-9223372036854775808", "-9223372036854775808" },
        { "u64", "18446744073709551615", "18446744073709551615" },
        { "f32", "1.5", "1.5" },
        { "f32", "0.1", "0.1" },
        { "f32", "1.000000059604644775390625001", "1.0000001" }, // just above halfway between 1 and the next float: was 1 (parsed as a double, then rounded again)
        { "f64", "-0.1", "-0.1" },
        { "f64", "1e3", "1000" },
        { "f64", "2.5E-3", "0.0025" },
        { "f64", "inf", "inf" },
        { "f64", "-inf", "-inf" },
        { "f64", "nan", "nan" },
        { "f64", "7", "7" },
        { "char", "'x'", "'x'" },
        { "char", @"'\u{1F600}'", "'\U0001F600'" },
        { "char", @"'\''", @"'\''" },
        { "char", "'\"'", "'\"'" },
        { "string", "\"world\"", "\"world\"" },
        { "string", @"""tab\there \""quoted\"" \\ back""", @"""tab\there \""quoted\"" \\ back""" },
        { "string", @"""line\nbreak\r""", @"""line\nbreak\r""" },
        { "string", @"""\u{7}bell""", @"""\u{7}bell""" },
        { "string", "\"it's\"", "\"it's\"" },
        { "string", "\"\"", "\"\"" },
        { "list", "[1, 2, 3]", "[1, 2, 3]" },
        { "list", "[ ]", "[]" },
        { "list", "[1,2,]", "[1, 2]" },
        { "nested", "[[\"a\"], [], [\"b\", \"c\"]]", "[[\"a\"], [], [\"b\", \"c\"]]" },
        { "tuple", "(1, \"b\")", "(1, \"b\")" },
        { "point", "{x: 1, y: -2}", "{x: 1, y: -2, label: none}" },
        { "point", "{ y: 2, x: 1, label: some(\"p\") }", "{x: 1, y: 2, label: some(\"p\")}" },
        { "point", "{x: 1, y: 2, label: \"bare\"}", "{x: 1, y: 2, label: some(\"bare\")}" },
        { "empty-record", "{:}", "{:}" },
        { "shape", "circle(2.5)", "circle(2.5)" },
        { "shape", "square( 4 )", "square(4)" },
        { "shape", "empty", "empty" },
        { "shape", "%ok", "%ok" },
        { "color", "green", "green" },
        { "option", "some(7)", "some(7)" },
        { "option", "none", "none" },
        { "option", "7", "some(7)" },
        { "nested-option", "some(none)", "some(none)" },
        { "result", "ok(\"a\")", "ok(\"a\")" },
        { "result", "err(5)", "err(5)" },
        { "empty-result", "ok", "ok" },
        { "empty-result", "err", "err" },
        { "perms", "{read, exec}", "{read, exec}" },
        { "perms", "{exec, read}", "{read, exec}" },
        { "perms", "{}", "{}" },
    };

    public static TheoryData<string, string, string> Malformed => new()
    {
        { "bool", "yes", "expected a bool (true or false) at 0" },
        { "bool", "", "expected a bool value, found the end of the text at 0" },
        { "s32", "1.5", "expected a s32 (a decimal integer) at 0" },
        { "s32", "0x10", "expected a s32 (a decimal integer) at 0" },
        { "s32", "+1", "expected a s32 (a decimal integer) at 0" },
        { "s32", "2147483648", "2147483648 is out of range for s32 at 0" },
        { "u8", "-1", "-1 is out of range for u8 at 0" },
        { "u8", "256", "256 is out of range for u8 at 0" },
        { "s32", "1 2", "unexpected text after the value at 2" },
        { "f64", "1.", "expected a f64: digits must follow the decimal point at 0" },
        { "f64", "1e", "expected a f64: digits must follow the exponent at 0" },
        { "f64", "infinity", "expected a f64 (a number, nan, inf or -inf) at 0" },
        { "f32", "1e39", "1e39 is out of range for f32 at 0" },
        { "char", "'ab'", "a char literal holds exactly one character at 0" },
        { "char", "''", "a char literal holds exactly one character at 0" },
        { "char", "x", "expected a char in 'quotes' at 0" },
        { "string", "world", "expected a string in \"quotes\" at 0" },
        { "string", "\"open", "unterminated string at 5" },
        { "string", @"""bad \q""", @"unknown escape \q at 5" },
        { "string", @"""\u{110000}""", @"a \u escape is \u{X} with 1 to 6 hex digits naming a Unicode scalar value at 1" },
        { "string", @"""\u{D800}""", @"a \u escape is \u{X} with 1 to 6 hex digits naming a Unicode scalar value at 1" },
        { "list", "[1, 2", "expected ',' or ']' at 5" },
        { "list", "[1,", "expected a u32 value, found the end of the text at 3" },
        { "list", "[1 2]", "expected ',' or ']' at 3" },
        { "list", "1, 2", "expected '[', found '1' at 0" },
        { "tuple", "(1)", "the tuple has 2 members, the text gives 1 at 0" },
        { "tuple", "(1, \"a\", 3)", "the tuple has only 2 members at 9" },
        { "point", "{x: 1}", "field 'y' is missing at 6" },
        { "point", "{x: 1, y: 2, z: 3}", "the record has no field 'z' at 13" },
        { "point", "{x: 1, x: 2, y: 3}", "field 'x' is given twice at 7" },
        { "point", "{x 1, y: 2}", "expected ':', found '1' at 3" },
        { "shape", "circle", "case 'circle' needs a payload in parentheses at 6" },
        { "shape", "empty(1)", "case 'empty' has no payload at 5" },
        { "shape", "triangle(1)", "'triangle' is not one of the cases circle, square, empty, ok at 0" },
        { "shape", "ok", "'ok' is a keyword; write %ok for a name at 0" },
        { "color", "purple", "'purple' is not one of the cases red, green, blue at 0" },
        { "option", "some(1", "expected ')', found the end of the text at 6" },
        { "nested-option", "5", "expected some(...) or none at 0" },
        { "result", "ok", "this result's ok case needs a payload in parentheses at 2" },
        { "result", "\"a\"", "expected ok, ok(...), err or err(...) at 0" },
        { "empty-result", "ok(1)", "this result's ok case has no payload at 2" },
        { "perms", "{read, admin}", "'admin' is not one of the flags read, write, exec at 7" },
        { "perms", "{read, read}", "flag 'read' is given twice at 7" },
        { "perms", "read", "expected '{', found 'r' at 0" },
    };

    [Theory]
    [MemberData(nameof(RoundTrips))]
    public void GivenWaveText_WhenParsedAndWritten_ThenTheTextIsCanonical(string type, string text, string expected)
    {
        Wave.Write(Wave.Parse(text, TypeOf(type))).ShouldBe(expected);
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void GivenMalformedText_WhenParsed_ThenTheErrorNamesTheProblemAndPosition(string type, string text, string expected)
    {
        Should.Throw<WaveException>(() => Wave.Parse(text, TypeOf(type))).Message.ShouldBe(expected);
    }

    [Fact]
    public void GivenDeepNesting_WhenParsed_ThenItIsRefusedWithoutOverflowingTheStack()
    {
        var type = WitType.Of(WitKind.U8);
        for (var i = 0; i < 200; i++)
        {
            type = new WitType(WitKind.List) { Element = type };
        }

        Should.Throw<WaveException>(() => Wave.Parse(new string('[', 200) + new string(']', 200), type)).Message.ShouldStartWith("nesting deeper than 100");
    }

    /// <summary>An integer of millions of digits is out of range at once, not parsed with BigInteger (superlinear: seconds
    /// of an invocation's slot that neither a stop nor --timeout could end). "At once" is measured against a parse of as
    /// many digits that stays linear (leading zeros, one significant digit) in the same test, not against the clock: the
    /// least of three runs each (what a pause or preemption spared), and a ratio far below BigInteger's hundredfold.</summary>
    [Fact]
    public void GivenAnIntegerOfMillionsOfDigits_WhenParsed_ThenItIsOutOfRangeAtOnce()
    {
        var huge = "1" + new string('0', 5_000_000);
        var zeros = new string('0', 5_000_000) + "7";

        var error = Should.Throw<WaveException>(() => Wave.Parse(huge, WitType.Of(WitKind.U64))).Message;
        error.ShouldEndWith(" is out of range for u64 at 0");
        Wave.Write(Wave.Parse(zeros, WitType.Of(WitKind.S32))).ShouldBe("7");

        var linear = LeastTime.Of(() => Wave.Parse(zeros, WitType.Of(WitKind.S32)));
        var outOfRange = LeastTime.Of(() => Should.Throw<WaveException>(() => Wave.Parse(huge, WitType.Of(WitKind.U64))));
        TestContext.Current.TestOutputHelper?.WriteLine($"leading zeros: {linear.TotalMilliseconds} ms; out of range: {outOfRange.TotalMilliseconds} ms");
        outOfRange.ShouldBeLessThan(linear * 20, $"against {linear.TotalMilliseconds} ms for as many leading zeros");
    }

    /// <summary>A value whose text passes the limit fails as soon as it does, naming the limit (a guest's string of
    /// control characters grew sixfold in text before anything checked its size).</summary>
    [Fact]
    public void GivenAValueWhoseTextPassesTheLimit_WhenWritten_ThenItFailsNamingTheLimit()
    {
        var value = ComponentValue.String(new string('\u0001', 1_000_000));

        Should.Throw<WaveException>(() => Wave.Write(value, 1 << 20)).Message.ShouldBe("its WAVE text is longer than 1048576 characters");
        Wave.Write(ComponentValue.List([ComponentValue.U8(1), ComponentValue.U8(2)]), 6).ShouldBe("[1, 2]");
        Should.Throw<WaveException>(() => Wave.Write(ComponentValue.List([ComponentValue.U8(1), ComponentValue.U8(2)]), 5));
    }

    [Fact]
    public void GivenValuesBuiltInCode_WhenWritten_ThenKeywordLabelsAreEscaped()
    {
        Wave.Write(ComponentValue.Enum("none")).ShouldBe("%none");
        Wave.Write(ComponentValue.Flags(["inf", "nan"])).ShouldBe("{%inf, %nan}");
        Wave.Write(ComponentValue.Record([new("some", ComponentValue.U8(1))])).ShouldBe("{%some: 1}");
        Wave.Write(ComponentValue.Record([])).ShouldBe("{:}");
    }

    private static WitType TypeOf(string name) => name switch
    {
        "bool" => WitType.Of(WitKind.Bool),
        "s8" => WitType.Of(WitKind.S8),
        "u8" => WitType.Of(WitKind.U8),
        "s16" => WitType.Of(WitKind.S16),
        "u16" => WitType.Of(WitKind.U16),
        "s32" => WitType.Of(WitKind.S32),
        "u32" => WitType.Of(WitKind.U32),
        "s64" => WitType.Of(WitKind.S64),
        "u64" => WitType.Of(WitKind.U64),
        "f32" => WitType.Of(WitKind.F32),
        "f64" => WitType.Of(WitKind.F64),
        "char" => WitType.Of(WitKind.Char),
        "string" => WitType.Of(WitKind.String),
        "list" => new WitType(WitKind.List) { Element = WitType.Of(WitKind.U32) },
        "nested" => new WitType(WitKind.List) { Element = new WitType(WitKind.List) { Element = WitType.Of(WitKind.String) } },
        "tuple" => new WitType(WitKind.Tuple) { Cases = [new("", WitType.Of(WitKind.U8)), new("", WitType.Of(WitKind.String))] },
        "point" => Point,
        "empty-record" => new WitType(WitKind.Record),
        "shape" => Shape,
        "color" => Color,
        "perms" => Perms,
        "option" => new WitType(WitKind.Option) { Element = WitType.Of(WitKind.U8) },
        "nested-option" => new WitType(WitKind.Option) { Element = new WitType(WitKind.Option) { Element = WitType.Of(WitKind.U8) } },
        "result" => new WitType(WitKind.Result) { Ok = WitType.Of(WitKind.String), Err = WitType.Of(WitKind.U32) },
        "empty-result" => new WitType(WitKind.Result),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };
}
