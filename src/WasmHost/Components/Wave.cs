using System.Globalization;
using System.Numerics;
using System.Text;
using Wasmtime.Components;

namespace Propeller.WasmHost.Components;

/// <summary>
/// WAVE, the WebAssembly Value Encoding (bytecodealliance/wasm-tools `wasm-wave`): component values as text, the way the
/// original proplet takes a custom export's inputs and prints its first result (spec §2.5). Our own, because no .NET
/// library serves it (ADR 0011). <see cref="Parse"/> reads text against a <see cref="WitType"/>;
/// <see cref="Write(ComponentValue, int)"/> prints a value (its kind carries everything the text needs).
/// </summary>
/// <remarks>
/// Text forms: <c>true</c>/<c>false</c>; decimal integers (range-checked); floats with optional fraction and exponent,
/// <c>nan</c>, <c>inf</c>, <c>-inf</c>; <c>'c'</c>; <c>"string"</c> (escapes <c>\\ \" \' \n \r \t \u{X}</c>);
/// <c>[list]</c>; <c>(tuple)</c>; <c>{field: value}</c> (option fields may be left out; the empty record is
/// <c>{:}</c>); variant and enum cases by name, a payload in parentheses; <c>some(x)</c>/<c>none</c> (a bare value is
/// <c>some</c> when the option does not nest); <c>ok</c>, <c>ok(x)</c>, <c>err</c>, <c>err(x)</c>; flags <c>{a, b}</c>.
/// Labels that are keywords are written with a leading <c>%</c>. Trailing commas are allowed.
/// </remarks>
public static class Wave
{
    /// <summary>Nesting deeper than this is refused (the text is untrusted input, the parser recursive).</summary>
    public const int MaxDepth = 100;

    private static readonly HashSet<string> Keywords = new(["true", "false", "some", "none", "ok", "err", "inf", "nan"], StringComparer.Ordinal);

    /// <summary>Parses <paramref name="text"/> as a value of <paramref name="type"/>; throws <see cref="WaveException"/>.</summary>
    public static ComponentValue Parse(string text, WitType type)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(type);
        var parser = new Parser(text);
        var value = parser.Value(type, 0);
        parser.SkipSpace();
        if (!parser.AtEnd)
        {
            throw parser.Error("unexpected text after the value");
        }

        return value;
    }

    /// <summary>
    /// Whether every value of <paramref name="type"/> has WAVE text: not when it is, or holds, a resource handle (own,
    /// borrow), a future, a stream or an error context, which <see cref="Write(ComponentValue, int)"/> refuses. Lets a caller
    /// refuse such a function before it runs rather than after (its result then lost).
    /// </summary>
    public static bool CanWrite(WitType type)
    {
        ArgumentNullException.ThrowIfNull(type);
        // The kinds after Flags (the C API's order): own, borrow, future, stream, error-context and any newer one.
        return type.Kind <= WitKind.Flags
               && (type.Element is null || CanWrite(type.Element))
               && (type.Ok is null || CanWrite(type.Ok))
               && (type.Err is null || CanWrite(type.Err))
               && type.Cases.All(c => c.Type is null || CanWrite(c.Type));
    }

    /// <summary>The WAVE text of <paramref name="value"/>; longer than <paramref name="maxLength"/> characters, a
    /// <see cref="WaveException"/> naming the limit, thrown as soon as the text passes it (the value is the guest's: a
    /// 100 MiB string of control characters, each written as <c>\u{1}</c>, grew to 600 million characters first).</summary>
    public static string Write(ComponentValue value, int maxLength = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(value);
        var text = new StringBuilder();
        Write(text, value, maxLength);
        return text.Length > maxLength ? throw TooLong(maxLength) : text.ToString();
    }

    private static WaveException TooLong(int maxLength) => new($"its WAVE text is longer than {maxLength} characters");

    private static void Write(StringBuilder text, ComponentValue value, int maxLength)
    {
        if (text.Length > maxLength)
        {
            throw TooLong(maxLength);
        }

        switch (value.Kind)
        {
            case ComponentValueKind.Bool or ComponentValueKind.S8 or ComponentValueKind.U8 or ComponentValueKind.S16 or ComponentValueKind.U16
                or ComponentValueKind.S32 or ComponentValueKind.U32 or ComponentValueKind.S64 or ComponentValueKind.U64
                or ComponentValueKind.F32 or ComponentValueKind.F64:
                text.Append(Scalar(value));
                break;
            case ComponentValueKind.Char:
                Quote(text, value.AsRune().ToString(), '\'', maxLength);
                break;
            case ComponentValueKind.String:
                Quote(text, value.AsString(), '"', maxLength);
                break;
            case ComponentValueKind.List:
                Sequence(text, '[', value.AsList(), ']', maxLength);
                break;
            case ComponentValueKind.Tuple:
                Sequence(text, '(', value.AsTuple(), ')', maxLength);
                break;
            case ComponentValueKind.Record:
                var fields = value.AsRecord();
                if (fields.Count == 0)
                {
                    text.Append("{:}");
                    break;
                }

                text.Append('{');
                for (var i = 0; i < fields.Count; i++)
                {
                    text.Append(i == 0 ? "" : ", ").Append(Label(fields[i].Key)).Append(": ");
                    Write(text, fields[i].Value, maxLength);
                }

                text.Append('}');
                break;
            case ComponentValueKind.Variant:
                text.Append(Label(value.AsVariant()));
                Payload(text, value.Payload, maxLength);
                break;
            case ComponentValueKind.Enum:
                text.Append(Label(value.AsEnum()));
                break;
            case ComponentValueKind.Option:
                if (value.IsSome)
                {
                    text.Append("some");
                    Payload(text, value.Payload, maxLength);
                }
                else
                {
                    text.Append("none");
                }

                break;
            case ComponentValueKind.Result:
                text.Append(value.IsOk ? "ok" : "err");
                Payload(text, value.Payload, maxLength);
                break;
            case ComponentValueKind.Flags:
                text.Append('{').AppendJoin(", ", value.AsFlags().Select(Label)).Append('}');
                break;
            default:
                throw new WaveException($"a {value.Kind} value has no WAVE text");
        }
    }

    private static string Scalar(ComponentValue value) => value.Kind switch
    {
        ComponentValueKind.Bool => value.AsBool() ? "true" : "false",
        ComponentValueKind.S8 => value.AsS8().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.U8 => value.AsU8().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.S16 => value.AsS16().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.U16 => value.AsU16().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.S32 => value.AsS32().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.U32 => value.AsU32().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.S64 => value.AsS64().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.U64 => value.AsU64().ToString(CultureInfo.InvariantCulture),
        ComponentValueKind.F32 => float.IsNaN(value.AsF32()) ? "nan" : FloatText.Format(value.AsF32()),
        _ => double.IsNaN(value.AsF64()) ? "nan" : FloatText.Format(value.AsF64()),
    };

    private static void Payload(StringBuilder text, ComponentValue? payload, int maxLength)
    {
        if (payload is not null)
        {
            text.Append('(');
            Write(text, payload, maxLength);
            text.Append(')');
        }
    }

    private static void Sequence(StringBuilder text, char open, IReadOnlyList<ComponentValue> items, char close, int maxLength)
    {
        text.Append(open);
        for (var i = 0; i < items.Count; i++)
        {
            text.Append(i == 0 ? "" : ", ");
            Write(text, items[i], maxLength);
        }

        text.Append(close);
    }

    private static string Label(string name) => Keywords.Contains(name) ? "%" + name : name;

    private static void Quote(StringBuilder text, string value, char quote, int maxLength)
    {
        text.Append(quote);
        foreach (var rune in value.EnumerateRunes())
        {
            if (text.Length > maxLength)
            {
                throw TooLong(maxLength);
            }

            switch (rune.Value)
            {
                case '\\':
                    text.Append(@"\\");
                    break;
                case '\n':
                    text.Append(@"\n");
                    break;
                case '\r':
                    text.Append(@"\r");
                    break;
                case '\t':
                    text.Append(@"\t");
                    break;
                case var c when c == quote:
                    text.Append('\\').Append(quote);
                    break;
                case var c when c < 0x20 || c == 0x7f:
                    text.Append(CultureInfo.InvariantCulture, $"\\u{{{c:x}}}");
                    break;
                default:
                    text.Append(rune.ToString());
                    break;
            }
        }

        text.Append(quote);
    }

    private sealed class Parser(string text)
    {
        private int _at;

        public bool AtEnd => _at >= text.Length;

        public WaveException Error(string reason) => new($"{reason} at {_at}");

        public void SkipSpace()
        {
            while (_at < text.Length && text[_at] is ' ' or '\t' or '\n' or '\r')
            {
                _at++;
            }
        }

        public ComponentValue Value(WitType type, int depth)
        {
            if (depth > MaxDepth)
            {
                throw Error($"nesting deeper than {MaxDepth}");
            }

            SkipSpace();
            if (AtEnd)
            {
                throw Error($"expected a {Name(type)} value, found the end of the text");
            }

            return type.Kind switch
            {
                WitKind.Bool => Bool(),
                WitKind.S8 => ComponentValue.S8((sbyte)Integer(type, sbyte.MinValue, sbyte.MaxValue)),
                WitKind.S16 => ComponentValue.S16((short)Integer(type, short.MinValue, short.MaxValue)),
                WitKind.S32 => ComponentValue.S32((int)Integer(type, int.MinValue, int.MaxValue)),
                WitKind.S64 => ComponentValue.S64((long)Integer(type, long.MinValue, long.MaxValue)),
                WitKind.U8 => ComponentValue.U8((byte)Integer(type, 0, byte.MaxValue)),
                WitKind.U16 => ComponentValue.U16((ushort)Integer(type, 0, ushort.MaxValue)),
                WitKind.U32 => ComponentValue.U32((uint)Integer(type, 0, uint.MaxValue)),
                WitKind.U64 => ComponentValue.U64((ulong)Integer(type, 0, ulong.MaxValue)),
                WitKind.F32 => ComponentValue.F32((float)Real(type)),
                WitKind.F64 => ComponentValue.F64(Real(type)),
                WitKind.Char => Char(),
                WitKind.String => ComponentValue.String(Quoted('"', "string")),
                WitKind.List => ComponentValue.List(Items('[', ']', _ => type.Element!, depth, null)),
                WitKind.Tuple => ComponentValue.Tuple(Items('(', ')', i => i < type.Cases.Count ? type.Cases[i].Type! : null, depth, type.Cases.Count)),
                WitKind.Record => Record(type, depth),
                WitKind.Variant => Variant(type, depth),
                WitKind.Enum => ComponentValue.Enum(Case(type).Name),
                WitKind.Option => Option(type, depth),
                WitKind.Result => Result(type, depth),
                WitKind.Flags => Flags(type),
                _ => throw Error($"a parameter of type {Name(type)} cannot be given as WAVE text"),
            };
        }

        private ComponentValue Bool()
        {
            var start = _at;
            return Word() switch
            {
                "true" => ComponentValue.Bool(true),
                "false" => ComponentValue.Bool(false),
                _ => throw ErrorAt(start, "expected a bool (true or false)"),
            };
        }

        private BigInteger Integer(WitType type, BigInteger min, BigInteger max)
        {
            var start = _at;
            if (Peek('-'))
            {
                _at++;
            }

            var digits = _at;
            while (_at < text.Length && char.IsAsciiDigit(text[_at]))
            {
                _at++;
            }

            if (_at == digits || (_at < text.Length && IsWordChar(text[_at])) || (_at < text.Length && text[_at] == '.'))
            {
                _at = start;
                throw Error($"expected a {Name(type)} (a decimal integer)");
            }

            // More than 20 significant digits (u64's maximum has 20) is out of range for every type, known without
            // BigInteger, whose parse is superlinear: a 5,000,000-digit argument took seconds that no stop could end.
            var value = text.AsSpan(digits, _at - digits).TrimStart('0').Length > 20
                ? max + 1
                : BigInteger.Parse(text.AsSpan(start, _at - start), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            if (value < min || value > max)
            {
                throw ErrorAt(start, $"{text[start.._at]} is out of range for {Name(type)}");
            }

            return value;
        }

        private double Real(WitType type)
        {
            var start = _at;
            switch (Word())
            {
                case "nan":
                    return double.NaN;
                case "inf":
                    return double.PositiveInfinity;
                case "-inf":
                    return double.NegativeInfinity;
                default:
                    _at = start;
                    break;
            }

            if (Peek('-'))
            {
                _at++;
            }

            var digits = CountDigits();
            if (digits > 0 && Peek('.'))
            {
                _at++;
                if (CountDigits() == 0)
                {
                    throw ErrorAt(start, $"expected a {Name(type)}: digits must follow the decimal point");
                }
            }

            if (digits > 0 && _at < text.Length && text[_at] is 'e' or 'E')
            {
                _at++;
                if (_at < text.Length && text[_at] is '+' or '-')
                {
                    _at++;
                }

                if (CountDigits() == 0)
                {
                    throw ErrorAt(start, $"expected a {Name(type)}: digits must follow the exponent");
                }
            }

            if (digits == 0 || (_at < text.Length && IsWordChar(text[_at])))
            {
                throw ErrorAt(start, $"expected a {Name(type)} (a number, nan, inf or -inf)");
            }

            if (type.Kind == WitKind.F32)
            {
                // Parsed as a float, not as a double cast to float: rounding twice moved values just above a halfway
                // point between two floats onto the lower one (1.000000059604644775390625001 became 1). A float is
                // exactly a double, so the caller's cast is exact.
                var single = float.Parse(text.AsSpan(start, _at - start), NumberStyles.Float, CultureInfo.InvariantCulture);
                return float.IsInfinity(single) ? throw ErrorAt(start, $"{text[start.._at]} is out of range for f32") : single;
            }

            return double.Parse(text.AsSpan(start, _at - start), NumberStyles.Float, CultureInfo.InvariantCulture);
        }

        private ComponentValue Char()
        {
            var start = _at;
            var content = Quoted('\'', "char");
            var runes = content.EnumerateRunes().GetEnumerator();
            if (!runes.MoveNext() || runes.Current.Utf16SequenceLength != content.Length)
            {
                throw ErrorAt(start, "a char literal holds exactly one character");
            }

            return ComponentValue.Char(runes.Current);
        }

        private string Quoted(char quote, string what)
        {
            if (!Peek(quote))
            {
                throw Error($"expected a {what} in {quote}quotes{quote}");
            }

            _at++;
            var value = new StringBuilder();
            while (true)
            {
                if (AtEnd)
                {
                    throw Error($"unterminated {what}");
                }

                var c = text[_at++];
                if (c == quote)
                {
                    return value.ToString();
                }

                if (c != '\\')
                {
                    value.Append(c);
                    continue;
                }

                if (AtEnd)
                {
                    throw Error($"unterminated {what}");
                }

                var escape = text[_at++];
                switch (escape)
                {
                    case '\\' or '"' or '\'':
                        value.Append(escape);
                        break;
                    case 'n':
                        value.Append('\n');
                        break;
                    case 'r':
                        value.Append('\r');
                        break;
                    case 't':
                        value.Append('\t');
                        break;
                    case 'u':
                        value.Append(Unicode().ToString());
                        break;
                    default:
                        _at -= 2;
                        throw Error($"unknown escape \\{escape}");
                }
            }
        }

        private Rune Unicode()
        {
            var start = _at - 2;
            var close = text.IndexOf('}', _at);
            if (!Peek('{') || close < 0 || close - _at - 1 is < 1 or > 6
                || !int.TryParse(text.AsSpan(_at + 1, close - _at - 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code)
                || !Rune.IsValid(code))
            {
                throw ErrorAt(start, @"a \u escape is \u{X} with 1 to 6 hex digits naming a Unicode scalar value");
            }

            _at = close + 1;
            return new Rune(code);
        }

        private List<ComponentValue> Items(char open, char close, Func<int, WitType?> typeOf, int depth, int? expected)
        {
            var start = _at;
            Expect(open);
            var items = new List<ComponentValue>();
            while (!Closes(close))
            {
                var type = typeOf(items.Count) ?? throw Error($"the tuple has only {expected} members");
                items.Add(Value(type, depth + 1));
                AfterItem(close);
            }

            if (expected is { } count && items.Count != count)
            {
                throw ErrorAt(start, $"the tuple has {count} members, the text gives {items.Count}");
            }

            return items;
        }

        private ComponentValue Record(WitType type, int depth)
        {
            Expect('{');
            SkipSpace();
            var given = new Dictionary<string, ComponentValue>(StringComparer.Ordinal);
            if (Peek(':'))
            {
                _at++;
                SkipSpace();
                Expect('}');
            }
            else
            {
                while (!Closes('}'))
                {
                    var start = _at;
                    var name = LabelText();
                    var field = type.Cases.FirstOrDefault(c => c.Name == name) ?? throw ErrorAt(start, $"the record has no field '{name}'");
                    if (given.ContainsKey(name))
                    {
                        throw ErrorAt(start, $"field '{name}' is given twice");
                    }

                    SkipSpace();
                    Expect(':');
                    given[name] = Value(field.Type!, depth + 1);
                    AfterItem('}');
                }
            }

            var fields = new List<KeyValuePair<string, ComponentValue>>(type.Cases.Count);
            foreach (var field in type.Cases)
            {
                if (given.TryGetValue(field.Name, out var value))
                {
                    fields.Add(new(field.Name, value));
                }
                else if (field.Type!.Kind == WitKind.Option)
                {
                    fields.Add(new(field.Name, ComponentValue.None()));
                }
                else
                {
                    throw Error($"field '{field.Name}' is missing");
                }
            }

            return ComponentValue.Record(fields);
        }

        private ComponentValue Variant(WitType type, int depth)
        {
            var @case = Case(type);
            SkipSpace();
            if (@case.Type is null)
            {
                if (Peek('('))
                {
                    throw Error($"case '{@case.Name}' has no payload");
                }

                return ComponentValue.Variant(@case.Name);
            }

            if (!Peek('('))
            {
                throw Error($"case '{@case.Name}' needs a payload in parentheses");
            }

            return ComponentValue.Variant(@case.Name, Parenthesised(@case.Type, depth));
        }

        private WitCase Case(WitType type)
        {
            var start = _at;
            var name = LabelText();
            return type.Cases.FirstOrDefault(c => c.Name == name)
                   ?? throw ErrorAt(start, $"'{name}' is not one of the cases {string.Join(", ", type.Cases.Select(c => c.Name))}");
        }

        private ComponentValue Option(WitType type, int depth)
        {
            var start = _at;
            var word = Word();
            if (word == "none")
            {
                return ComponentValue.None();
            }

            SkipSpace();
            if (word == "some" && Peek('('))
            {
                return ComponentValue.Some(Parenthesised(type.Element!, depth));
            }

            _at = start;
            if (type.Element!.Kind is WitKind.Option or WitKind.Result)
            {
                throw Error("expected some(...) or none");
            }

            // A bare value stands for some(value) when that cannot be ambiguous.
            return ComponentValue.Some(Value(type.Element, depth + 1));
        }

        private ComponentValue Result(WitType type, int depth)
        {
            var start = _at;
            var word = Word();
            if (word is not ("ok" or "err"))
            {
                throw ErrorAt(start, "expected ok, ok(...), err or err(...)");
            }

            var payloadType = word == "ok" ? type.Ok : type.Err;
            SkipSpace();
            ComponentValue? payload = null;
            if (payloadType is null)
            {
                if (Peek('('))
                {
                    throw Error($"this result's {word} case has no payload");
                }
            }
            else if (Peek('('))
            {
                payload = Parenthesised(payloadType, depth);
            }
            else
            {
                throw Error($"this result's {word} case needs a payload in parentheses");
            }

            return word == "ok" ? ComponentValue.Ok(payload) : ComponentValue.Err(payload);
        }

        private ComponentValue Flags(WitType type)
        {
            Expect('{');
            var names = new List<string>();
            while (!Closes('}'))
            {
                var start = _at;
                var name = LabelText();
                if (!type.Cases.Any(c => c.Name == name))
                {
                    throw ErrorAt(start, $"'{name}' is not one of the flags {string.Join(", ", type.Cases.Select(c => c.Name))}");
                }

                if (names.Contains(name, StringComparer.Ordinal))
                {
                    throw ErrorAt(start, $"flag '{name}' is given twice");
                }

                names.Add(name);
                AfterItem('}');
            }

            // Declaration order, as the canonical ABI numbers the bits.
            return ComponentValue.Flags([.. type.Cases.Select(c => c.Name).Where(n => names.Contains(n, StringComparer.Ordinal))]);
        }

        private ComponentValue Parenthesised(WitType type, int depth)
        {
            Expect('(');
            var value = Value(type, depth + 1);
            SkipSpace();
            Expect(')');
            return value;
        }

        /// <summary>A case, field or flag name: kebab-case letters and digits, a leading % for a keyword.</summary>
        private string LabelText()
        {
            var escaped = Peek('%');
            if (escaped)
            {
                _at++;
            }

            var start = _at;
            var name = Word();
            if (name.Length == 0 || !char.IsAsciiLetter(name[0]) || name.EndsWith('-') || name.Contains("--", StringComparison.Ordinal))
            {
                throw ErrorAt(start, "expected a name");
            }

            if (!escaped && Keywords.Contains(name))
            {
                throw ErrorAt(start, $"'{name}' is a keyword; write %{name} for a name");
            }

            return name;
        }

        private string Word()
        {
            var start = _at;
            while (_at < text.Length && (IsWordChar(text[_at]) || (text[_at] == '-' && (_at > start || _at + 1 < text.Length))))
            {
                _at++;
            }

            return text[start.._at];
        }

        private int CountDigits()
        {
            var start = _at;
            while (_at < text.Length && char.IsAsciiDigit(text[_at]))
            {
                _at++;
            }

            return _at - start;
        }

        private void Expect(char c)
        {
            if (!Peek(c))
            {
                throw Error(AtEnd ? $"expected '{c}', found the end of the text" : $"expected '{c}', found '{text[_at]}'");
            }

            _at++;
        }

        private bool Peek(char c) => _at < text.Length && text[_at] == c;

        /// <summary>At the closing bracket of a sequence (after spaces): consumes it.</summary>
        private bool Closes(char close)
        {
            SkipSpace();
            if (!Peek(close))
            {
                return false;
            }

            _at++;
            return true;
        }

        /// <summary>After an item: a comma (consumed) or the closing bracket (left for <see cref="Closes"/>).</summary>
        private void AfterItem(char close)
        {
            SkipSpace();
            if (Peek(','))
            {
                _at++;
            }
            else if (!Peek(close))
            {
                throw Error($"expected ',' or '{close}'");
            }
        }

        private WaveException ErrorAt(int at, string reason)
        {
            _at = at;
            return Error(reason);
        }

        private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c);

        private static string Name(WitType type) => type.ToString();
    }
}
