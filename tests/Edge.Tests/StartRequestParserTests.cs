using System.Text;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class StartRequestParserTests
{
    private static readonly TaskLimits Defaults = new(null, null, null);

    [Fact]
    public void GivenTheManagersStartPayload_WhenParsed_ThenTheRequestCarriesItsFields()
    {
        var parse = Parse("""
            {"id":"t1","name":"main","state":1,"file":"AGFz","inputs":["10",32],"cli_args":null,"env":{"A":"b"},
             "broadcast":false,"daemon":false,"latent":false,"encrypted":false,"proplet_id":"me","parent_results":{}}
            """);

        var request = parse.Request.ShouldNotBeNull();
        request.Id.ShouldBe("t1");
        request.Name.ShouldBe("main");
        request.Inputs.ShouldBe(["10", "32"]); // numbers are read as their text
        request.Env["A"].ShouldBe("b");
        request.Monitoring.ShouldBe(MonitoringProfile.Standard);
    }

    [Fact]
    public void GivenAStartForAnotherProplet_WhenParsed_ThenItIsDroppedSilently()
    {
        Parse("""{"id":"t1","name":"main","file":"AGFz","proplet_id":"other"}""").IsForOtherProplet.ShouldBeTrue();
        Parse("""{"id":"t1","name":"main","file":"AGFz","proplet_id":"other","daemon":null}""").IsForOtherProplet.ShouldBeTrue();
        Parse("""{"id":"t1","name":"main","file":"AGFz","proplet_id":"other"} trailing""").IsForOtherProplet.ShouldBeTrue();
        Parse("""{"id":"t1","name":"main","file":"AGFz","proplet_id":"other","broadcast":true}""").Request.ShouldNotBeNull();
        Parse("""{"id":"t1","name":"main","file":"AGFz"}""").Request.ShouldNotBeNull();
    }

    [Theory]
    [InlineData("""{"id":"t1","file":"AGFz"}""", "t1", "invalid start request:")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","daemon":null}""", "t1", "invalid start request:")]
    [InlineData("""{"id":"t1","name":"","file":"AGFz"}""", "t1", "name is required")]
    [InlineData("""{"id":"","name":"main","file":"AGFz"}""", null, "id is required")]
    [InlineData("""{"id":"t1","name":"main"}""", "t1", "either file or image_url must be provided")]
    [InlineData("""{"id":"t1","name":"main","file":"","image_url":""}""", "t1", "either file or image_url must be provided")]
    [InlineData("""{"id":"t1","name":"main","encrypted":true,"file":"AGFz"}""", "t1", "image_url is required for encrypted workloads")]
    [InlineData("""{"id":"t1","name":"main","encrypted":true,"image_url":"r/x","file":"AGFz"}""", "t1", "encrypted workloads should only use image_url, not file")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","cli_args":["--fuel","lots"]}""", "t1", "invalid start request: --fuel 'lots'")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","monitoring_profile":{"enabled":true}}""", "t1", "invalid start request: monitoring_profile.interval")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","cli_args":["--timeout","5000000"]}""", "t1", "invalid start request: --timeout '5000000'")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","cli_args":[null]}""", "t1", "invalid start request: cli_args must hold strings")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","inputs":["1",null]}""", "t1", "invalid start request: inputs[1]")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","env":{"A":null}}""", "t1", "invalid start request: env values must be strings")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","env":{"":"x"}}""", "t1", "invalid start request: env names must be non-empty")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","env":{"A=B":"x"}}""", "t1", "invalid start request: env names must be non-empty")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","env":{"A\u0000":"x"}}""", "t1", "invalid start request: env names must be non-empty")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","env":{"A":"x\u0000y"}}""", "t1", "invalid start request: env names must be non-empty")]
    [InlineData("""{"id":"t1","name":"_start","file":"AGFz","inputs":["a\u0000b"]}""", "t1", "invalid start request: inputs must not hold NUL")]
    [InlineData("""{"id":"t1","name":"_start","file":"AGFz","cli_args":["--dir","/tmp\u0000/x"]}""", "t1", "invalid start request: cli_args must not hold NUL")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz"} trailing""", "t1", "invalid start request:")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz"}{"id":"t2"}""", "t1", "invalid start request:")]
    [InlineData("""{"id":"t1","name":"main","file":"AG""", null, "invalid start request:")]
    [InlineData("not json", null, "invalid start request:")]
    [InlineData("[1,2]", null, "invalid start request:")]
    public void GivenAnInvalidStart_WhenParsed_ThenTheErrorIsReportedWithTheIdWhenKnown(string json, string? id, string error)
    {
        var parse = Parse(json);

        parse.Request.ShouldBeNull();
        parse.Id.ShouldBe(id);
        parse.Error.ShouldNotBeNull().ShouldStartWith(error);
    }

    /// <summary>A value of the wrong type is named in the protocol's terms, not .NET's (it read "The JSON value could not
    /// be converted to System.String. Path: $.name | LineNumber: 0 | BytePositionInLine: 18.").</summary>
    [Theory]
    [InlineData("""{"id":"t1","name":5,"file":"AGFz"}""", "invalid start request: name: expected a string")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","daemon":null}""", "invalid start request: daemon: expected true or false")]
    [InlineData("""{"id":"t1","name":"main","file":"AGFz","env":[]}""", "invalid start request: env: expected an object of strings")]
    [InlineData("""[1,2]""", "invalid start request: expected a JSON object")]
    public void GivenAValueOfTheWrongType_WhenParsed_ThenTheErrorNamesTheFieldAndWhatItTakes(string json, string error) =>
        Parse(json).Error.ShouldBe(error);

    [Fact]
    public void GivenLimitFlagsInCliArgs_WhenParsed_ThenTheyOverrideTheProplesDefaults()
    {
        var request = StartRequestParser.Parse(
            Encoding.UTF8.GetBytes("""{"id":"t","name":"main","file":"AGFz","cli_args":["--fuel","500","--timeout=1.5","--other"]}"""),
            "me",
            new TaskLimits(10, 64, TimeSpan.FromSeconds(9))).Request.ShouldNotBeNull();

        request.Limits.ShouldBe(new TaskLimits(500, 64, TimeSpan.FromSeconds(1.5)));
    }

    [Fact]
    public void GivenADaemonOrAFullProfile_WhenParsed_ThenTheProfileIsTheDaemonDefaultOrTheGivenOne()
    {
        Parse("""{"id":"t","name":"main","file":"AGFz","daemon":true}""").Request!.Monitoring.ShouldBe(MonitoringProfile.LongRunningDaemon);
        var profile = Parse("""
            {"id":"t","name":"main","file":"AGFz","monitoring_profile":{"enabled":true,"interval":3,"collect_cpu":true,
             "collect_memory":false,"collect_disk_io":true,"collect_threads":true,"collect_file_descriptors":false,
             "export_to_mqtt":true,"retain_history":false,"history_size":7}}
            """).Request!.Monitoring;
        profile.ShouldBe(new MonitoringProfile(true, TimeSpan.FromSeconds(3), true, false, true, true, false, true, false, 7));
    }

    [Theory]
    [InlineData(10_000_000_000UL, true, 10)]
    [InlineData(0UL, false, 1)]
    [InlineData(500_000_000UL, true, 4_294_967)] // seconds beyond what a delay can wait: the longest one instead of a failed monitor
    public void GivenAGoDurationOrZeroInterval_WhenParsed_ThenItIsNanosecondsOrMonitoringOff(ulong interval, bool enabled, int seconds)
    {
        var profile = Parse($$$"""
            {"id":"t","name":"main","file":"AGFz","monitoring_profile":{"enabled":true,"interval":{{{interval}}},"collect_cpu":true,
             "collect_memory":true,"collect_disk_io":true,"collect_threads":true,"collect_file_descriptors":true,
             "export_to_mqtt":true,"retain_history":true,"history_size":5}}
            """).Request!.Monitoring;

        profile.Enabled.ShouldBe(enabled);
        profile.Interval.ShouldBe(TimeSpan.FromSeconds(seconds));
    }

    private static StartParse Parse(string json) => StartRequestParser.Parse(Encoding.UTF8.GetBytes(json), "me", Defaults);
}
