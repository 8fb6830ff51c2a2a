using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Propeller.Cli.Tests;

/// <summary>What the CLI does when the manager (a <see cref="FakeManager"/>) misbehaves, or its input is out of range.</summary>
public sealed partial class ManagerFailureTests : IDisposable
{
    private const string Id = FakeManager.TaskId;

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("cli-failure-tests");

    public void Dispose() => _dir.Delete(true);

    /// <summary>A 2xx answer of an unexpected shape is one line and exit 1, whatever the command.</summary>
    [Theory]
    [InlineData("{}", "task", "list")]
    [InlineData("[]", "task", "list")]
    [InlineData("{}", "proplet", "list")]
    [InlineData("{}", "proplet", "get", "p1")]
    [InlineData("{}", "plugin", "list")]
    [InlineData("{\"plugins\":[{\"name\":\"x\"}],\"skipped\":[]}", "plugin", "reload")]
    [InlineData("{\"proplets\":[],\"total\":\"many\"}", "proplet", "list")]
    public async Task AnAnswerOfAnUnexpectedShape_IsOneLine_AndExit1(string body, params string[] args)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(body)));

        var outcome = await Cli.RunAsync(manager, args);

        outcome.Exit.ShouldBe(1, outcome.ToString());
        outcome.Err.Trim().ShouldStartWith($"propeller: unexpected answer from the manager at {FakeManager.Url}/: ");
        outcome.Err.Trim().Split('\n').Length.ShouldBe(1, outcome.ToString());
    }

    /// <summary>`task run` whose create answers without an id stops there, with one line and exit 1.</summary>
    [Fact]
    public async Task Run_WhenTheCreateAnswersWithoutAnId_IsOneLine_AndExit1()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("{}")));
        var file = Path.Combine(_dir.FullName, "add.wasm");
        await File.WriteAllBytesAsync(file, Wasm.Addition, TestContext.Current.CancellationToken);

        var run = await Cli.RunAsync(manager, "task", "run", file);

        run.Exit.ShouldBe(1, run.ToString());
        run.Err.Trim().ShouldStartWith("propeller: unexpected answer from the manager");
        manager.Requests.ShouldBe([$"POST {FakeManager.Url}/tasks"]);
    }

    /// <summary>Pages the manager would refuse (task limit 1-100, offsets and proplet limits below 0 or 1) are usage errors.</summary>
    [Theory]
    [InlineData("task", "--limit", "0", "--limit must be between 1 and 100")]
    [InlineData("task", "--limit", "101", "--limit must be between 1 and 100")]
    [InlineData("task", "--limit", "-1", "--limit must be between 1 and 100")]
    [InlineData("task", "--offset", "-1", "--offset must be 0 or more")]
    [InlineData("proplet", "--limit", "0", "--limit must be 1 or more")]
    [InlineData("proplet", "--offset", "-1", "--offset must be 0 or more")]
    public async Task List_WithAPageOutOfRange_IsAUsageError(string noun, string option, string value, string message)
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json("""{"offset":0,"limit":20,"total":0,"tasks":[],"proplets":[]}""")));

        var list = await Cli.RunAsync(manager, noun, "list", option, value);

        list.Exit.ShouldBe(2, list.ToString());
        list.Err.ShouldContain(message);
        manager.Requests.ShouldBeEmpty();
    }

    /// <summary>`proplet list --offset` pages through the proplets and says which of how many it shows.</summary>
    [Fact]
    public async Task PropletList_WithAnOffset_AsksForThatPage_AndSaysWhichItShows()
    {
        var manager = new FakeManager((_, _) => Task.FromResult(FakeManager.Json(
            """{"offset":5,"limit":2,"total":6,"proplets":[{"id":"p6","name":"six","alive":true,"task_count":0}]}""")));

        var list = await Cli.RunAsync(manager, "proplet", "list", "--offset", "5", "--limit", "2");

        list.Exit.ShouldBe(0, list.ToString());
        manager.Requests.ShouldBe([$"GET {FakeManager.Url}/proplets?offset=5&limit=2"]);
        list.Out.ShouldContain("p6");
        list.Out.Trim().Split('\n')[^1].ShouldBe("6-6 of 6 proplets");
    }
}
