using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;

namespace Propeller.Manager.Http;

/// <summary>
/// Runs a command through the one command path with the request's metadata: X-User-Id as the user, and
/// X-Correlation-Id (or the request id) as the correlation id; <c>headers</c> (such as the plugin decisions) are
/// stored with the events.
/// </summary>
internal sealed class CommandSender(CommandHandler handler, TimeProvider time)
{
    public DateTimeOffset Now => time.GetUtcNow();

    public Task<CommandResult<TEvent, TState>> SendAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, HttpRequest request, CancellationToken cancellationToken)
        where TEvent : class =>
        SendAsync(decider, streamId, command, request, static (_, _) => [], null, cancellationToken);

    public Task<CommandResult<TEvent, TState>> SendAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, HttpRequest request, IReadOnlyDictionary<string, string>? headers,
        CancellationToken cancellationToken)
        where TEvent : class =>
        SendAsync(decider, streamId, command, request, static (_, _) => [], headers, cancellationToken);

    /// <summary>Sends the command and writes the messages derived from its outcome through the outbox, atomically.</summary>
    public Task<CommandResult<TEvent, TState>> SendAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, HttpRequest request,
        Func<TState, IReadOnlyList<TEvent>, IReadOnlyList<OutgoingMessage>> outbox, IReadOnlyDictionary<string, string>? headers, CancellationToken cancellationToken)
        where TEvent : class =>
        SendAsync(decider, streamId, command, request, (_, state, events) => outbox(state, events), null, headers, cancellationToken);

    /// <summary>
    /// As above, with a follow-up command decided on the first one's outcome and appended with it (see
    /// <see cref="CommandHandler"/>); <paramref name="outbox"/> is also given the request's correlation id.
    /// </summary>
    public Task<CommandResult<TEvent, TState>> SendAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, HttpRequest request,
        Func<string, TState, IReadOnlyList<TEvent>, IReadOnlyList<OutgoingMessage>> outbox,
        Func<TState, CancellationToken, ValueTask<TCommand?>>? followUp, IReadOnlyDictionary<string, string>? headers, CancellationToken cancellationToken)
        where TEvent : class
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(outbox);
        var user = request.Headers["X-User-Id"].FirstOrDefault();
        var correlation = request.Headers["X-Correlation-Id"].FirstOrDefault() ?? request.HttpContext.TraceIdentifier;
        var metadata = new EventMetadata(correlation, null, string.IsNullOrEmpty(user) ? null : user, time.GetUtcNow(), headers);
        return handler.HandleAsync(decider, streamId, command, metadata, (state, events) => outbox(correlation, state, events), followUp, cancellationToken);
    }
}
