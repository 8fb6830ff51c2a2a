namespace Propeller.Infrastructure.EventStore;

/// <summary>
/// The versioned schema of the event store. Append-only: a released migration is never edited; changes come as a new
/// version. "{schema}" is replaced by the quoted schema name.
/// </summary>
internal static class Migrations
{
    public static IReadOnlyList<(int Version, string Description, string Sql)> All { get; } =
    [
        (1, "streams, events, snapshots, projections, append_events", """
            create table {schema}.streams (
                id          text primary key,
                type        text not null,
                version     bigint not null,
                created_at  timestamptz not null,
                updated_at  timestamptz not null,
                archived    boolean not null default false,
                archived_at timestamptz,
                last_tx_id  xid8
            );

            create table {schema}.events (
                seq        bigint generated always as identity,
                id         uuid not null,
                -- No foreign key to streams: append_events always writes the stream row first, and a per-row FK
                -- check (a KEY SHARE lock on the stream row per event) costs more than the insert itself.
                stream_id  text not null,
                version    bigint not null,
                type       text not null,
                data       jsonb not null,
                metadata   jsonb not null,
                tx_id      xid8 not null default pg_current_xact_id(),
                created_at timestamptz not null default now(),
                -- The commit-safe global cursor reads in (tx_id, seq) order; as the primary key it costs no extra
                -- index (seq alone is never looked up).
                constraint events_pk primary key (tx_id, seq),
                constraint events_stream_version unique (stream_id, version)
            );

            create table {schema}.snapshots (
                stream_id  text primary key,
                type       text not null,
                version    bigint not null,
                data       jsonb not null,
                created_at timestamptz not null default now()
            );

            -- One row per async projection: its checkpoint (committed with its writes), its lease and its health.
            create table {schema}.projections (
                name              text primary key,
                last_tx_id        xid8 not null default '0',
                last_seq          bigint not null default 0,
                events_applied    bigint not null default 0,
                status            text not null default 'running',
                error             text,
                failed_stream_id  text,
                failed_version    bigint,
                failed_seq        bigint,
                failed_at         timestamptz,
                rebuild_requested boolean not null default false,
                rebuilds          integer not null default 0,
                lease_owner       text,
                lease_token       bigint not null default 0,
                lease_expires_at  timestamptz,
                updated_at        timestamptz not null default now()
            );

            -- Append in one call: lock the stream row and check the expected version before inserting anything.
            -- p_expected: -2 = any, 0 = the stream must not exist, n > 0 = exactly n.
            create function {schema}.append_events(
                p_stream text, p_type text, p_expected bigint,
                p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[], p_at timestamptz, p_positions boolean,
                out o_version bigint, out o_tx xid8, out o_seqs bigint[])
            language plpgsql as $$
            declare
                v_current  bigint;
                v_archived boolean;
                v_last_tx  xid8;
            begin
                -- Serialise writers of this stream on an advisory lock first: it needs no transaction id, so the id
                -- taken right after it is newer than the previous writer's, and (tx_id, seq) order agrees with
                -- version order within the stream.
                perform pg_advisory_xact_lock(hashtextextended(p_stream, 7346));
                o_tx := pg_current_xact_id();
                select version, archived, last_tx_id into v_current, v_archived, v_last_tx
                  from {schema}.streams where id = p_stream for update;
                if not found then
                    if p_expected > 0 then
                        raise exception 'stream % does not exist, expected version %', p_stream, p_expected
                            using errcode = 'PV001', hint = '0';
                    end if;
                    insert into {schema}.streams (id, type, version, created_at, updated_at)
                        values (p_stream, p_type, 0, p_at, p_at)
                        on conflict (id) do nothing;
                    if found then
                        v_current := 0;
                        v_archived := false;
                    else
                        -- Created concurrently by a transaction that has committed since: lock it and check again.
                        select version, archived, last_tx_id into v_current, v_archived, v_last_tx
                          from {schema}.streams where id = p_stream for update;
                    end if;
                end if;
                if v_archived then
                    raise exception 'stream % is archived', p_stream using errcode = 'PV002';
                end if;
                if p_expected >= 0 and v_current <> p_expected then
                    raise exception 'stream % is at version %, expected %', p_stream, v_current, p_expected
                        using errcode = 'PV001', hint = v_current::text;
                end if;
                if v_last_tx is not null and v_last_tx > o_tx then
                    raise exception 'transaction % is older than the last writer % of stream %', o_tx, v_last_tx, p_stream
                        using errcode = 'PV003', hint = v_current::text;
                end if;
                -- The global positions are returned only when asked for (inline projections need them).
                if p_positions then
                    with inserted as (
                        insert into {schema}.events (id, stream_id, version, type, data, metadata, created_at)
                        select u.id, p_stream, v_current + u.ord, u.t, u.d, u.m, p_at
                          from unnest(p_ids, p_types, p_data, p_meta) with ordinality as u (id, t, d, m, ord)
                        returning seq, version)
                    select array_agg(seq order by version) into o_seqs from inserted;
                else
                    insert into {schema}.events (id, stream_id, version, type, data, metadata, created_at)
                    select u.id, p_stream, v_current + u.ord, u.t, u.d, u.m, p_at
                      from unnest(p_ids, p_types, p_data, p_meta) with ordinality as u (id, t, d, m, ord);
                end if;
                o_version := v_current + cardinality(p_types);
                update {schema}.streams set version = o_version, updated_at = p_at, last_tx_id = o_tx where id = p_stream;
            end
            $$;
            """),
        (2, "outbox and inbox", """
            -- Messages written in the business transaction and sent after commit by the relay (ARCHITECTURE.md §4).
            create table {schema}.outbox (
                id              bigint generated always as identity primary key,
                destination     text not null,
                payload         bytea not null,
                headers         jsonb,
                created_at      timestamptz not null default now(),
                attempts        integer not null default 0,
                next_attempt_at timestamptz not null default now(),
                claimed_until   timestamptz,
                sent_at         timestamptz,
                dead_at         timestamptz,
                last_error      text
            );
            create index outbox_pending on {schema}.outbox (next_attempt_at, id) where sent_at is null and dead_at is null;

            -- Incoming messages, stored before they are acknowledged and handled once (deduplicated by key).
            create table {schema}.inbox (
                message_key text primary key,
                received_at timestamptz not null default now(),
                handled_at  timestamptz
            );
            """),
        (3, "inbox payloads, task and proplet metrics", """
            -- The inbox keeps what it acknowledged until it is handled, so a crash in between loses nothing.
            alter table {schema}.inbox add column topic text, add column payload bytea;
            create index inbox_unhandled on {schema}.inbox (received_at) where handled_at is null;

            -- Telemetry from proplets (spec propeller-manager.md §6.6): append-only samples, not domain events.
            create table {schema}.task_metrics (
                id          bigint generated always as identity primary key,
                task_id     uuid not null,
                proplet_id  text not null,
                sampled_at  timestamptz not null,
                metrics     jsonb not null,
                aggregated  jsonb,
                received_at timestamptz not null default now()
            );
            create index task_metrics_task on {schema}.task_metrics (task_id, sampled_at desc, id desc);

            create table {schema}.proplet_metrics (
                id          bigint generated always as identity primary key,
                proplet_id  text not null,
                namespace   text,
                sampled_at  timestamptz not null,
                cpu         jsonb not null,
                memory      jsonb not null,
                received_at timestamptz not null default now()
            );
            create index proplet_metrics_proplet on {schema}.proplet_metrics (proplet_id, sampled_at desc, id desc);
            """),
        (4, "lock_streams for group commit", """
            -- Locks several streams in one order (the hash order of their advisory locks), so two transactions that
            -- append to overlapping sets of streams never deadlock, and all locks are held before the transaction
            -- takes its id (see append_events).
            create function {schema}.lock_streams(p_streams text[]) returns void
            language plpgsql as $$
            declare
                v_key bigint;
            begin
                for v_key in select distinct hashtextextended(s, 7346) from unnest(p_streams) s order by 1 loop
                    perform pg_advisory_xact_lock(v_key);
                end loop;
            end
            $$;
            """),
    ];
}
