using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Propeller.Manager.Http;

namespace Propeller.Manager.Tests.Http;

/// <summary>How the failures that reach the API's exception handler are answered.</summary>
public sealed class ApiExceptionHandlerTests
{
    /// <summary>
    /// A value beyond one of PostgreSQL's limits (54000: a text too long for a btree index's row) is the client's input,
    /// not our failure: 400 naming what PostgreSQL refused, as for the other values it cannot store. It was a 500
    /// "internal error" (a 10,000-character proplet_id, before the validator refused it).
    /// </summary>
    [Fact]
    public async Task GivenAValueBeyondAPostgresLimit_WhenItReachesTheHandler_ThenTheAnswerIs400NamingIt()
    {
        var context = new DefaultHttpContext();
        context.Response.Body = new MemoryStream();
        var limit = new PostgresException(
            "index row size 10016 exceeds btree version 4 maximum 2704 for index \"mt_doc_taskstate_idx_proplet__id\"", "ERROR", "ERROR", PostgresErrorCodes.ProgramLimitExceeded);

        var handled = await new ApiExceptionHandler(NullLogger<ApiExceptionHandler>.Instance)
            .TryHandleAsync(context, new InvalidOperationException("wrapped", limit), TestContext.Current.CancellationToken);

        handled.ShouldBeTrue();
        context.Response.StatusCode.ShouldBe(StatusCodes.Status400BadRequest);
        context.Response.Body.Position = 0;
        using var body = await JsonDocument.ParseAsync(context.Response.Body, cancellationToken: TestContext.Current.CancellationToken);
        var error = body.RootElement.GetProperty("error").GetString();
        error.ShouldStartWith("a value cannot be stored: ");
        error.ShouldContain("proplet__id");
    }
}
