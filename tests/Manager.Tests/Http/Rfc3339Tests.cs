using Propeller.Contracts.Json;

namespace Propeller.Manager.Tests.Http;

/// <summary>Times in bodies, replay's <c>at</c> and metrics samples: RFC 3339's date-time, as docs/compatibility.md says.</summary>
public sealed class Rfc3339Tests
{
    [Theory]
    [InlineData("2026-12-05T10:00:00Z", "2026-12-05T10:00:00.0000000+00:00")]
    [InlineData("2026-12-05t10:00:00z", "2026-12-05T10:00:00.0000000+00:00")] // RFC 3339 §5.6 NOTE: lowercase allowed (Go refuses)
    [InlineData("2026-12-05T10:00:00z", "2026-12-05T10:00:00.0000000+00:00")]
    [InlineData("2026-12-05 10:00:00Z", "2026-12-05T10:00:00.0000000+00:00")] // a space separator, also allowed there
    [InlineData("2026-12-05t11:00:00.5+01:00", "2026-12-05T10:00:00.5000000+00:00")]
    [InlineData("2026-12-05 09:00:00-01:00", "2026-12-05T10:00:00.0000000+00:00")]
    public void AnRfc3339Time_IsReadAsItsInstantInUtc(string text, string instant)
    {
        Rfc3339.TryParse(text, out var value).ShouldBeTrue();

        value.ToString("o", System.Globalization.CultureInfo.InvariantCulture).ShouldBe(instant);
        value.Offset.ShouldBe(TimeSpan.Zero);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("2026-12-05")]
    [InlineData("2026-12-05T10:00:00")]
    [InlineData("2026-12-05T10:00Z")]
    [InlineData("2026-12-05x10:00:00Z")]
    [InlineData("2026-12-05  10:00:00Z")]
    [InlineData("2026-12-05T10:00:00 Z")]
    [InlineData("2026-12-05T10:00:00+0100")]
    [InlineData("12/05/2026 10:00:00Z")]
    [InlineData("2026-13-05T10:00:00Z")]
    public void AnythingElse_IsRefused(string? text) => Rfc3339.TryParse(text, out _).ShouldBeFalse();
}
