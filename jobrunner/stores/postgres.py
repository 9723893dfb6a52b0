"""The PostgreSQL store: many processes and machines share one queue.

``Runner(store="postgresql://user@host/db")`` or
``Runner(store=PostgresStore(dsn, schema="jobrunner"))``; install with the
``jobrunner[postgres]`` extra (asyncpg).

How it works, and what it guarantees:

* Tables live in their own schema (``jobrunner`` by default), created and
  migrated on ``open()`` under an advisory lock, so processes starting
  together install it once. ``schema_migrations`` records the version; a
  schema newer than this release knows is refused with a ``StoreError``.
* Every hot operation is one statement and one round trip, committed on its
  own: an enqueue (a batch is one ``INSERT ... SELECT FROM unnest``), a claim
  (``FOR UPDATE SKIP LOCKED`` over a partial index, ordered by
  ``(priority, run_at, seq)``), a settle of a batch of outcomes. No
  transaction stays open while a job runs: the claim commits a lease (expiry,
  worker, a fencing ``token``) and every later write about the attempt is
  conditional on ``(id, token, status = 'running')``.
* Enqueues ``NOTIFY`` the schema's channel; each store keeps one dedicated
  connection that ``LISTEN``s and wakes this process's idle runners, so a job
  enqueued anywhere starts without waiting for a poll. That connection is
  watched (termination callback and a periodic ping) and reconnected with
  backoff; after a reconnect the runners are woken once, since notifications
  may have been missed, and while it is down ``poll_interval`` shrinks to a
  second. Enqueues in this process wake its runners directly.
* ``enqueue(..., connection=conn)`` inserts on the caller's asyncpg connection,
  inside the caller's transaction: the job exists exactly when their data
  commits, and the ``NOTIFY`` is delivered at that commit.
* Leadership is a lease row per role. The listening connection also holds a
  session advisory lock whose key is written into the row, so when a leader's
  process dies (its connections close and the lock goes) a follower takes
  over at its next try instead of waiting out the lease.
* Cron ticks: a row per schedule with the last tick fired, advanced only
  forward, in the same transaction as the tick's job insert.
* Durability is PostgreSQL's: an enqueue that returned is committed (with the
  server's ``synchronous_commit`` and ``fsync`` settings). Delivery is at least
  once: a worker that dies loses its lease and the job runs again.
* Payloads are JSON (``jsonb``), never pickle; times are epoch seconds as
  ``double precision``, always the ``now`` the runner passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from jobrunner import defaults
from jobrunner.errors import InvalidJobState, JobNotFound, StoreError
from jobrunner.logs import get_logger
from jobrunner.models import (
    ClaimedJob,
    ClaimRequest,
    Enqueued,
    ErrorInfo,
    HistoryEntry,
    JobRecord,
    JobSpec,
    JobStatus,
    LeaseReport,
    LeaseTerms,
    Outcome,
    OutcomeKind,
    RescuedJob,
    StoreStats,
    Trigger,
)

__all__ = ["SCHEMA_VERSION", "PostgresStore", "install_schema"]

_log = get_logger("jobrunner.stores.postgres")
_new_tuple = tuple.__new__

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

# A runner that has not claimed for this long no longer counts as knowing its names.
_KNOWN_NAMES_TTL = 300.0
# How often a claiming runner re-records the names it knows (in its own ``now``).
_NAMES_REFRESH = 60.0
# Rows about runners that stopped this long ago are deleted by the leader.
_RUNNER_ROWS_TTL = 86_400.0
# A rescue takes back at most this many jobs per call; the leader calls again.
_RESCUE_BATCH = 10_000
# The LISTEN connection: reconnect backoff, and a ping to notice a silent drop.
_RECONNECT_MIN = 0.05
_RECONNECT_MAX = 5.0
_PING_INTERVAL = 30.0
_PING_TIMEOUT = 10.0
# While it is down, idle runners re-check at least this often.
_POLL_WHILE_DEAF = 1.0
# wait_done on a job another process runs: re-read with this backoff.
_WAIT_POLL_MIN = 0.005
_WAIT_POLL_MAX = 0.5

_WAITING_SQL = "('queued', 'scheduled', 'retrying')"
_ACTIVE_SQL = "('queued', 'scheduled', 'running', 'retrying')"
_FINAL_SQL = "('succeeded', 'dead', 'cancelled')"
_FINAL = frozenset({"succeeded", "dead", "cancelled"})


# --- schema and migrations ---------------------------------------------------------------
# Each migration is applied once, in order, in the install transaction. Released
# migrations never change: a new release appends one.

_MIGRATION_1 = f"""
CREATE TABLE {{s}}.jobs (
    id text PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    status text NOT NULL CHECK (status IN {_ACTIVE_SQL[:-1]}, 'succeeded', 'dead', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    timeout double precision,
    key text,
    workspace_id text,
    trigger text NOT NULL,
    enqueued_at double precision NOT NULL,
    run_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    worker text,
    token bigint NOT NULL DEFAULT 0,
    lease_expires_at double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    args jsonb NOT NULL,
    kwargs jsonb NOT NULL,
    headers jsonb,
    meta jsonb,
    result jsonb,
    result_error text,
    error_type text,
    error_message text,
    error_traceback text,
    history jsonb NOT NULL DEFAULT '[]'
);
-- Claims: best waiting job first. Partial, so finished rows cost it nothing.
CREATE INDEX jobs_ready ON {{s}}.jobs (priority, run_at, seq) WHERE status IN {_WAITING_SQL};
-- next_run_at: the earliest delayed job.
CREATE INDEX jobs_waiting_run_at ON {{s}}.jobs (run_at) WHERE status IN {_WAITING_SQL};
-- The rescuer: expired leases.
CREATE INDEX jobs_lease ON {{s}}.jobs (lease_expires_at) WHERE status = 'running';
-- A key is unique among active jobs.
CREATE UNIQUE INDEX jobs_active_key ON {{s}}.jobs (key)
    WHERE key IS NOT NULL AND status IN {_ACTIVE_SQL};
-- Pruning and purging finished jobs in bounded batches.
CREATE INDEX jobs_finished ON {{s}}.jobs (finished_at) WHERE status IN {_FINAL_SQL};
-- Dead letters, newest first.
CREATE INDEX jobs_dead ON {{s}}.jobs (seq) WHERE status = 'dead';
CREATE TABLE {{s}}.leaders (
    role text PRIMARY KEY,
    holder text NOT NULL,
    expires_at double precision NOT NULL
);
CREATE TABLE {{s}}.cron_ticks (
    schedule text PRIMARY KEY,
    fire_at double precision NOT NULL
);
"""

_MIGRATION_2 = """
-- Leadership taken over as soon as the leader's session is gone.
ALTER TABLE {s}.leaders ADD COLUMN session_key bigint;
-- The job names each live runner registered, for stats().unknown_names.
CREATE TABLE {s}.runners (
    worker text PRIMARY KEY,
    names text[] NOT NULL,
    seen_at double precision NOT NULL
);
-- A queue table turns over all its rows: vacuum it after 2% of them changed,
-- not the default 20%, so dead tuples do not pile up between prunes.
ALTER TABLE {s}.jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
"""

_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "jobs, leaders and cron ticks", _MIGRATION_1),
    (2, "leader session liveness, runners' names, autovacuum for queue churn", _MIGRATION_2),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]
"""The schema version this release installs and understands."""


def _quote(schema: str) -> str:
    return f'"{schema}"'


def _check_schema(schema: str) -> str:
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ValueError(
            f"PostgresStore(schema={schema!r}): use lower-case letters, digits and underscores, "
            f"starting with a letter or underscore, at most 48 characters"
        )
    return schema


async def install_schema(connection: Any, schema: str = "jobrunner", *, target: int | None = None) -> int:
    """Create or migrate ``schema`` on an asyncpg ``connection``, up to ``target``
    (default: the latest version); return the version it is at.

    ``PostgresStore.open()`` calls this; call it yourself to install the schema
    ahead of a deploy (the user then needs no CREATE privilege at run time).
    Safe to run from several processes at once: a transaction-scoped advisory
    lock serializes installers. Raises ``StoreError`` if the schema is newer
    than this release.
    """
    _check_schema(schema)
    target = SCHEMA_VERSION if target is None else target
    if not 1 <= target <= SCHEMA_VERSION:
        raise ValueError(f"install_schema(target={target}): versions are 1..{SCHEMA_VERSION}")
    s = _quote(schema)
    async with connection.transaction():
        # CREATE ... IF NOT EXISTS is not safe against a concurrent twin; the lock is.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"jobrunner.install:{schema}"
        )
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            f"version integer PRIMARY KEY, description text NOT NULL, "
            f"applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(
            await connection.fetchval(f"SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")
        )
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"PostgreSQL schema {schema!r} is at version {current}, newer than this jobrunner "
                f"understands (up to {SCHEMA_VERSION}); upgrade jobrunner in this process, or point it "
                f"at another schema with PostgresStore(schema=...)"
            )
        for version, description, sql in _MIGRATIONS:
            if current < version <= target:
                await connection.execute(sql.format(s=s))
                await connection.execute(
                    f"INSERT INTO {s}.schema_migrations (version, description) VALUES ($1, $2)",
                    version,
                    description,
                )
                current = version
    return current


# --- statements -----------------------------------------------------------------------------
# Columns a claim returns, in this order (indexes below).
_CLAIM_RETURNING = """
    j.id, j.name, j.args::text AS args, j.kwargs::text AS kwargs, j.queue, j.priority, j.max_attempts,
    j.timeout, j.key, j.workspace_id, j.enqueued_at, j.run_at, j.trigger, j.headers::text AS headers,
    j.meta::text AS meta, j.attempts, j.token, j.seq"""

# The claim's update of the picked rows; $1 now, $3 limit, $4 worker, $5-$7 lease terms.
# The claim's update of the picked rows; $1 now, $3 limit, $4 worker, $5-$7 lease
# terms. The statement also answers "when is the next delayed job due?" (one
# index probe), which an idle runner asks right after a claim that came back
# short: always one row, with NULL job columns when nothing was claimed.
_CLAIM_UPDATE = f""", claimed AS (
UPDATE {{s}}.jobs j SET
    status = 'running',
    attempts = j.attempts + 1,
    token = j.token + 1,
    started_at = $1,
    worker = $4,
    lease_expires_at = $1 + coalesce($5::float8, coalesce(j.timeout, $6::float8) + $7::float8),
    cancel_requested = false
FROM chosen WHERE j.id = chosen.id
RETURNING {_CLAIM_RETURNING}
)
SELECT claimed.*, later.next_at
FROM (SELECT min(run_at) AS next_at FROM {{s}}.jobs WHERE status IN {_WAITING_SQL} AND run_at > $1) later
LEFT JOIN claimed ON true
"""

# $1 now, $2 names (NULL: any), $8 queues (NULL: any).
_READY = (
    f"status IN {_WAITING_SQL} AND run_at <= $1 AND ($2::text[] IS NULL OR name = ANY($2::text[])) "
    f"AND ($8::text[] IS NULL OR queue = ANY($8::text[]))"
)

# Claim without per-queue limits: the best ``limit`` ready jobs.
_CLAIM = (
    f"""
WITH chosen AS (
    SELECT id FROM {{s}}.jobs
    WHERE {_READY}
    ORDER BY priority, run_at, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)"""
    + _CLAIM_UPDATE
)

# Claim with per-queue limits ($9 limited queues, $10 their room): each limited
# queue contributes at most its room, the other queues at most ``limit``, and
# the best ``limit`` of those are taken (rows locked but not taken are released
# when the statement commits). FOR UPDATE cannot sit under a UNION, hence the
# one LATERAL over (queue, room) pairs plus a NULL row for "every other queue".
_CLAIM_WITH_ROOM = (
    f"""
WITH room(queue, n) AS (
    SELECT * FROM unnest($9::text[], $10::int[])
    UNION ALL SELECT NULL, $3
), picked AS (
    SELECT c.id, c.priority, c.run_at, c.seq FROM room CROSS JOIN LATERAL (
        SELECT id, priority, run_at, seq FROM {{s}}.jobs
        WHERE {_READY}
          AND CASE WHEN room.queue IS NULL THEN queue <> ALL($9::text[]) ELSE queue = room.queue END
        ORDER BY priority, run_at, seq
        LIMIT room.n
        FOR UPDATE SKIP LOCKED
    ) c
), chosen AS (
    SELECT id FROM picked ORDER BY priority, run_at, seq LIMIT $3
)"""
    + _CLAIM_UPDATE
)

# One statement inserts a batch and notifies listeners (delivered at commit).
_ENQUEUE = f"""
WITH ins AS (
    INSERT INTO {{s}}.jobs (id, name, queue, priority, status, max_attempts, timeout, key, workspace_id,
                          trigger, enqueued_at, run_at, args, kwargs, headers, meta)
    SELECT u.id, u.name, u.queue, u.priority,
           CASE WHEN u.run_at > $16 THEN 'scheduled' ELSE 'queued' END,
           u.max_attempts, u.timeout, u.key, u.workspace_id, u.trigger, u.enqueued_at, u.run_at,
           u.args::jsonb, u.kwargs::jsonb, u.headers::jsonb, u.meta::jsonb
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::float8[], $7::text[],
                $8::text[], $9::text[], $10::float8[], $11::float8[], $12::text[], $13::text[],
                $14::text[], $15::text[])
         WITH ORDINALITY AS u(id, name, queue, priority, max_attempts, timeout, key, workspace_id,
                              trigger, enqueued_at, run_at, args, kwargs, headers, meta, ord)
    ORDER BY u.ord
    ON CONFLICT (key) WHERE key IS NOT NULL AND status IN {_ACTIVE_SQL} DO NOTHING
    RETURNING id
)
SELECT array(SELECT id FROM ins), pg_notify($17, $18)
"""

_ACTIVE_KEYS = f"SELECT key, id FROM {{s}}.jobs WHERE key = ANY($1::text[]) AND status IN {_ACTIVE_SQL}"

# The status an outcome leads to; a released attempt goes back to where it came from.
_SETTLED_STATUS = "coalesce(u.status, CASE WHEN j.trigger = 'retry' THEN 'retrying' ELSE 'queued' END)"

# Outcomes that put a job back in the queue (a retry, a release) notify the
# other processes in the same statement ($13 channel, $14 payload).
_SETTLE = f"""
WITH settled AS (
UPDATE {{s}}.jobs j SET
    status = {_SETTLED_STATUS},
    attempts = CASE WHEN u.kind = 'released' THEN j.attempts - 1 ELSE j.attempts END,
    run_at = CASE WHEN u.kind = 'retry' THEN u.retry_at ELSE j.run_at END,
    trigger = CASE WHEN u.kind = 'retry' THEN 'retry' ELSE j.trigger END,
    finished_at = CASE WHEN u.kind IN {_FINAL_SQL} THEN u.at END,
    lease_expires_at = NULL,
    result = u.result::jsonb,
    result_error = u.result_error,
    error_type = CASE WHEN u.kind IN ('retry', 'dead', 'cancelled') THEN u.error_type ELSE j.error_type END,
    error_message = CASE WHEN u.kind IN ('retry', 'dead', 'cancelled') THEN u.error_message ELSE j.error_message END,
    error_traceback = CASE WHEN u.kind IN ('retry', 'dead', 'cancelled') THEN u.error_traceback ELSE j.error_traceback END,
    -- Claims and successes are implied by started_at and finished_at; the rarer
    -- transitions log the attempt's start and its end.
    history = CASE WHEN u.kind = 'succeeded' THEN j.history ELSE j.history || jsonb_build_array(
        jsonb_build_array(j.started_at, 'running', j.attempts, j.worker, ''),
        jsonb_build_array(u.at, {_SETTLED_STATUS}, j.attempts, j.worker, u.note)) END
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::float8[], $5::float8[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
     AS u(id, token, kind, at, retry_at, result, result_error, error_type, error_message,
          error_traceback, status, note)
WHERE j.id = u.id AND j.token = u.token AND j.status = 'running'
RETURNING j.id, j.status
)
SELECT id, status,
       (SELECT count(pg_notify($13, $14)) FROM (
            SELECT 1 FROM settled WHERE status IN ('queued', 'retrying') LIMIT 1) AS requeued)
FROM settled
"""

_EXTEND = """
UPDATE {s}.jobs j SET lease_expires_at = $3 + coalesce($4::float8, coalesce(j.timeout, $5::float8) + $6::float8)
FROM unnest($1::text[], $2::bigint[]) AS u(id, token)
WHERE j.id = u.id AND j.token = u.token AND j.status = 'running'
RETURNING j.id, j.cancel_requested
"""

_NEXT_RUN_AT = f"SELECT min(run_at) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL} AND run_at > $1"

_COUNT_PENDING = f"SELECT count(*) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL}"

_RESCUE = """
WITH expired AS (
    SELECT id,
           CASE WHEN cancel_requested THEN 'cancelled'
                WHEN attempts >= max_attempts THEN 'dead'
                ELSE 'retrying' END AS status
    FROM {s}.jobs
    WHERE status = 'running' AND lease_expires_at < $1
    ORDER BY lease_expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), rescued AS (
UPDATE {s}.jobs j SET
    status = e.status,
    finished_at = CASE WHEN e.status = 'retrying' THEN NULL ELSE $1 END,
    -- Ready at once, for every process: not the rescuer's now, which may be
    -- ahead of the other processes' clocks (the job was due long before anyway).
    run_at = least(j.run_at, $1),
    trigger = CASE WHEN e.status = 'retrying' THEN 'retry' ELSE j.trigger END,
    lease_expires_at = NULL,
    error_type = 'LeaseExpired',
    error_message = 'worker ' || coalesce(j.worker, '?') || ' stopped renewing its lease on attempt '
        || j.attempts || '; the worker probably died',
    error_traceback = '',
    history = j.history || jsonb_build_array(
        jsonb_build_array(j.started_at, 'running', j.attempts, j.worker, ''),
        jsonb_build_array($1, e.status, j.attempts, j.worker, 'lease expired'))
FROM expired e WHERE j.id = e.id
RETURNING j.id, j.name, j.attempts, j.status
)
SELECT id, name, attempts, status,
       (SELECT count(pg_notify($3, $4)) FROM (
            SELECT 1 FROM rescued WHERE status = 'retrying' LIMIT 1) AS requeued)
FROM rescued
"""

_PRUNE = """
DELETE FROM {s}.jobs WHERE id = ANY(ARRAY(
    SELECT id FROM {s}.jobs
    WHERE status = ANY($1::text[]) AND finished_at < $2
    ORDER BY finished_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
))
"""

# Lapsed, or its holder's session (and so its process) is gone.
_TRY_LEAD = """
INSERT INTO {s}.leaders AS l (role, holder, expires_at, session_key) VALUES ($1, $2, $3::float8 + $4::float8, $5::bigint)
ON CONFLICT (role) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at, session_key = excluded.session_key
    WHERE l.holder = excluded.holder
       OR l.expires_at < $3
       OR (l.session_key IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = (l.session_key >> 32)::oid
              AND objid = (l.session_key & 4294967295)::oid
              AND objsubid = 1))
RETURNING holder
"""

_FIRE_TICK = """
INSERT INTO {s}.cron_ticks AS t (schedule, fire_at) VALUES ($1, $2)
ON CONFLICT (schedule) DO UPDATE SET fire_at = excluded.fire_at WHERE t.fire_at < excluded.fire_at
RETURNING fire_at
"""

_RECORD_COLUMNS = """
    id, name, args::text, kwargs::text, queue, priority, status, attempts, max_attempts, timeout,
    key, workspace_id, trigger, enqueued_at, run_at, started_at, finished_at, result::text,
    error_type, error_message, error_traceback, worker, cancel_requested, headers::text,
    meta::text, history::text, result_error"""

_STATS = """
SELECT queue,
       CASE WHEN status = 'scheduled' AND run_at <= $1 THEN 'queued' ELSE status END AS status,
       count(*)
FROM {s}.jobs GROUP BY 1, 2
"""

_OLDEST = f"SELECT $1 - min(run_at) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL} AND run_at <= $1"

_UNKNOWN = f"""
SELECT name, greatest(0, $1 - min(run_at)) FROM {{s}}.jobs
WHERE status IN {_WAITING_SQL}
  AND name <> ALL(ARRAY(SELECT DISTINCT unnest(names) FROM {{s}}.runners WHERE seen_at > $1 - $2))
GROUP BY name
"""


@dataclass(frozen=True, slots=True)
class _Statements:
    """Every statement, with the schema filled in."""

    claim: str
    claim_with_room: str
    enqueue: str
    active_keys: str
    settle: str
    extend: str
    next_run_at: str
    count_pending: str
    rescue: str
    prune: str
    try_lead: str
    resign: str
    fire_tick: str
    cron_state: str
    get: str
    get_for_update: str
    stats: str
    oldest: str
    unknown: str
    seen_names: str
    forget_runners: str

    @classmethod
    def for_schema(cls, schema: str) -> _Statements:
        s = _quote(schema)
        fmt = {"s": s}
        return cls(
            claim=_CLAIM.format(**fmt),
            claim_with_room=_CLAIM_WITH_ROOM.format(**fmt),
            enqueue=_ENQUEUE.format(**fmt),
            active_keys=_ACTIVE_KEYS.format(**fmt),
            settle=_SETTLE.format(**fmt),
            extend=_EXTEND.format(**fmt),
            next_run_at=_NEXT_RUN_AT.format(**fmt),
            count_pending=_COUNT_PENDING.format(**fmt),
            rescue=_RESCUE.format(**fmt),
            prune=_PRUNE.format(**fmt),
            try_lead=_TRY_LEAD.format(**fmt),
            resign=f"DELETE FROM {s}.leaders WHERE role = $1 AND holder = $2",
            fire_tick=_FIRE_TICK.format(**fmt),
            cron_state=f"SELECT schedule, fire_at FROM {s}.cron_ticks",
            get=f"SELECT {_RECORD_COLUMNS} FROM {s}.jobs WHERE id = $1",
            get_for_update=f"SELECT status, key FROM {s}.jobs WHERE id = $1 FOR UPDATE",
            stats=_STATS.format(**fmt),
            oldest=_OLDEST.format(**fmt),
            unknown=_UNKNOWN.format(**fmt),
            seen_names=(
                f"INSERT INTO {s}.runners (worker, names, seen_at) VALUES ($1, $2, $3) "
                f"ON CONFLICT (worker) DO UPDATE SET names = excluded.names, seen_at = excluded.seen_at"
            ),
            forget_runners=f"DELETE FROM {s}.runners WHERE seen_at < $1",
        )


# --- payloads -------------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    # allow_nan=False: jsonb has no NaN or Infinity; fail at enqueue, not in the server.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if "\\u0000" in text:
        raise ValueError("it contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store")
    return text


def _payload_error(spec: JobSpec, exc: Exception) -> TypeError:
    """A TypeError naming the job and the first argument that cannot be stored."""
    where, value = "", None
    for index, arg in enumerate(spec.args):
        try:
            _dumps(arg)
        except (TypeError, ValueError) as arg_exc:
            where, value, exc = f"positional argument {index}", arg, arg_exc
            break
    else:
        for name, arg in spec.kwargs.items():
            try:
                _dumps(arg)
            except (TypeError, ValueError) as arg_exc:
                where, value, exc = f"argument {name!r}", arg, arg_exc
                break
    if where:
        what = f"{where} ({type(value).__name__})"
    else:
        what = "its headers or meta" if spec.args or spec.kwargs else "its arguments"
    return TypeError(
        f"job {spec.name!r}: {what} cannot be stored as JSON ({exc}). The PostgreSQL store keeps "
        f"arguments as JSON, never pickle: pass plain data (str, int, float, bool, None, lists, "
        f"dicts with str keys), e.g. an id the job looks up. Nothing was enqueued."
    )


def _encode_spec(spec: JobSpec) -> tuple[str, str, str | None, str | None]:
    try:
        args = _dumps(spec.args) if spec.args else "[]"
        kwargs = _dumps(spec.kwargs) if spec.kwargs else "{}"
        headers = None if spec.headers is None else _dumps(dict(spec.headers))
        meta = None if spec.meta is None else _dumps(dict(spec.meta))
    except (TypeError, ValueError) as exc:
        raise _payload_error(spec, exc) from exc
    return args, kwargs, headers, meta


def _encode_result(result: Any) -> tuple[str | None, str | None]:
    """The result as JSON, or why it cannot be stored (the job still succeeded)."""
    if result is None:
        return None, None
    try:
        return _dumps(result), None
    except (TypeError, ValueError, RecursionError) as exc:
        return None, (
            f"the job succeeded but its result ({type(result).__name__}) cannot be stored as JSON: {exc}; "
            f"return plain data (str, int, float, bool, None, lists, dicts with str keys)"
        )


def _decode_payload(args_text: str, kwargs_text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args_text == "[]":
        args: Any = ()
    else:
        args = json.loads(args_text)
        if not isinstance(args, list):
            raise ValueError(f"args is a JSON {type(args).__name__}, not an array")
        args = tuple(args)
    if kwargs_text == "{}":
        return args, {}
    kwargs = json.loads(kwargs_text)
    if not isinstance(kwargs, dict):
        raise ValueError(f"kwargs is a JSON {type(kwargs).__name__}, not an object")
    return args, kwargs


def _loads_mapping(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


# --- DSNs and errors ------------------------------------------------------------------------
def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable DSN>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _connect_error(dsn: str, exc: BaseException) -> StoreError:
    where = f"PostgreSQL at {redact_dsn(dsn)}"
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return StoreError(f"{where} refused the credentials: {exc}; check the user and password in the DSN")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(f"{where}: {exc}; create the database (createdb) or fix its name in the DSN")
    if isinstance(exc, OSError | TimeoutError):
        return StoreError(
            f"cannot reach {where}: {exc or type(exc).__name__}; check that the server is running "
            f"and that the DSN's host and port are right"
        )
    return StoreError(f"cannot connect to {where}: {type(exc).__name__}: {exc}")


async def _keep_session(_conn: Any) -> None:
    """Pool connections never change session state (no SET, LISTEN, cursors or
    session locks; transactions are always closed), so skip the reset query that
    asyncpg otherwise runs on every release: a round trip on every store call."""


def _is_connection(value: Any) -> bool:
    return isinstance(value, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy)


# --- the store -----------------------------------------------------------------------------
class PostgresStore:
    """Jobs in PostgreSQL, shared by every runner that opens the same DSN and schema.

    Args:
        dsn: ``postgresql://user:password@host:port/database`` (libpq URL or keywords).
        schema: the PostgreSQL schema that holds jobrunner's tables; several
            independent queues can share a database under different schemas.
        min_connections, max_connections: the connection pool's bounds (one more
            connection per store is kept for LISTEN).
        claim_batch: most jobs one claim takes.
        poll_interval: seconds between re-checks an idle runner makes in case a
            notification was lost (LISTEN/NOTIFY normally wakes it at once).
        connect_timeout: seconds to wait for the server when connecting.
        statement_cache_size: asyncpg's prepared-statement cache per connection;
            0 behind a transaction-pooling PgBouncer.
        application_name: what this store's connections show in
            ``pg_stat_activity`` (default ``jobrunner <schema>``); the LISTEN
            connection adds `` listen``. Give each process its own name to tell
            them apart, or to find a dead process's sessions.
    """

    durable = True
    serializes_payloads = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "jobrunner",
        min_connections: int = 1,
        max_connections: int = 10,
        claim_batch: int = defaults.CLAIM_BATCH,
        poll_interval: float = 5.0,
        connect_timeout: float = 10.0,
        statement_cache_size: int = 100,
        application_name: str | None = None,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ValueError(f"PostgresStore(dsn={dsn!r}): give a URL such as postgresql://user@host/db")
        if not 1 <= min_connections <= max_connections:
            raise ValueError(
                f"PostgresStore(min_connections={min_connections}, max_connections={max_connections}): "
                f"need 1 <= min_connections <= max_connections"
            )
        if claim_batch < 1:
            raise ValueError(f"PostgresStore(claim_batch={claim_batch}): must be >= 1")
        if not poll_interval > 0:
            raise ValueError(f"PostgresStore(poll_interval={poll_interval}): must be seconds > 0")
        self.schema = _check_schema(schema)
        # PostgreSQL truncates longer names (NAMEDATALEN); keep room for " listen".
        name = f"jobrunner {self.schema}"[:56] if application_name is None else application_name
        if not isinstance(name, str) or not name or len(name) > 56:
            raise ValueError(f"PostgresStore(application_name={application_name!r}): give 1 to 56 characters")
        self.application_name = name
        self.claim_batch = claim_batch
        self._dsn = dsn
        self._min, self._max = min_connections, max_connections
        self._poll = float(poll_interval)
        self._connect_timeout = connect_timeout
        self._statement_cache_size = statement_cache_size
        self._sql = _Statements.for_schema(schema)
        # pg_notify's channel is a plain string; LISTEN quotes it (asyncpg does).
        self._channel = f"{schema}.work"
        # Our own notifications carry this, so we do not wake ourselves twice.
        self._instance = secrets.token_hex(8)
        # A session advisory lock held by the LISTEN connection: alive while this process is.
        self._session_key = secrets.randbits(62)
        self._pool: Any = None
        self._installed = False
        self._listen_conn: Any = None
        self._supervisor: asyncio.Task[None] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._listeners: list[Callable[[], None]] = []
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._names_seen: dict[str, tuple[frozenset[str], float]] = {}
        # (claim's now, earliest future run_at then, self._writes then); see next_run_at.
        self._next_run_at: tuple[float, float | None, int] | None = None
        self._writes = 0  # bumped by every write here that can add or move a waiting job

    def __repr__(self) -> str:
        return f"PostgresStore({redact_dsn(self._dsn)!r}, schema={self.schema!r})"

    @property
    def poll_interval(self) -> float | None:
        """Slow fallback while LISTEN works; a second while it is being reconnected."""
        if self._listen_conn is None and self._pool is not None:
            return min(self._poll, _POLL_WHILE_DEAF)
        return self._poll

    @poll_interval.setter
    def poll_interval(self, value: float | None) -> None:
        if value is None or not value > 0:
            raise ValueError(f"poll_interval={value!r}: the PostgreSQL store needs seconds > 0")
        self._poll = float(value)

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up (notifications from other processes arrive)."""
        return self._listen_conn is not None and not self._listen_conn.is_closed()

    # lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, install or migrate the schema, start listening. Idempotent."""
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._pool is not None:
                return
            try:
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min,
                    max_size=self._max,
                    timeout=self._connect_timeout,
                    statement_cache_size=self._statement_cache_size,
                    server_settings={"application_name": self.application_name},
                    init=self._warm_up,
                    reset=_keep_session,
                )
            except _CONNECT_ERRORS as exc:
                raise _connect_error(self._dsn, exc) from exc
            except ValueError as exc:  # a malformed DSN
                raise StoreError(f"PostgreSQL DSN {redact_dsn(self._dsn)} is not valid: {exc}") from exc
            try:
                async with pool.acquire() as conn:
                    await install_schema(conn, self.schema)
                self._installed = True
                self._listen_conn = await self._connect_listener()
            except StoreError:
                await pool.close()
                raise
            except _CONNECT_ERRORS as exc:
                await pool.close()
                if isinstance(exc, asyncpg.PostgresError) and not isinstance(
                    exc, asyncpg.PostgresConnectionError
                ):
                    raise StoreError(
                        f"cannot install jobrunner's schema {self.schema!r} in PostgreSQL at "
                        f"{redact_dsn(self._dsn)}: {type(exc).__name__}: {exc}; the user needs the CREATE "
                        f"privilege on the database, or an administrator can run "
                        f"jobrunner.stores.postgres.install_schema() once"
                    ) from exc
                raise _connect_error(self._dsn, exc) from exc
            self._pool = pool
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"jobrunner.postgres.listen[{self.schema}]"
            )

    async def close(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            with contextlib.suppress(*_CONNECT_ERRORS):
                await asyncio.wait_for(conn.close(), _PING_TIMEOUT)
            conn.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), _PING_TIMEOUT)
            except TimeoutError:
                pool.terminate()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiters.clear()

    def add_work_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on the event loop when work may be ready (here or in any process)."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _notify_local(self) -> None:
        self._writes += 1
        for callback in list(self._listeners):
            callback()

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._instance:
            self._notify_local()

    async def _warm_up(self, conn: Any) -> None:
        """Run on each new pool connection, so that the first claim or settle it
        serves costs no more than any other: asyncpg looks up array types with a
        slow catalog query (~15 ms) the first time a connection meets them, and
        each statement is prepared once per connection. These no-op runs do both
        (not on the pool's first connection, which exists before the schema does)."""
        if not self._installed:
            return
        terms: list[Any] = [0.0, None, 0, "", None, 0.0, 0.0, None]
        await conn.fetch(self._sql.claim, *terms)
        await conn.fetch(self._sql.settle, *([[]] * 12), self._channel, self._instance)
        await conn.fetch(self._sql.extend, [], [], 0.0, None, 0.0, 0.0)
        await conn.fetchval(self._sql.next_run_at, 0.0)

    async def _connect_listener(self) -> Any:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": f"{self.application_name} listen"},
        )
        try:
            await conn.add_listener(self._channel, self._on_notification)
            # Held as long as this session lives; try_lead reads it to tell a dead
            # leader from a live one. A random 62-bit key: a clash is not a concern.
            await conn.execute("SELECT pg_advisory_lock($1)", self._session_key)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _supervise(self) -> None:
        """Keep the LISTEN connection up: watch it, and reconnect with backoff."""
        delay = _RECONNECT_MIN
        while True:
            conn = self._listen_conn
            if conn is None:
                try:
                    conn = await self._connect_listener()
                except _CONNECT_ERRORS as exc:
                    _log.warning(
                        "PostgreSQL LISTEN connection failed; polling until it is back",
                        store=repr(self),
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=delay,
                    )
                    # Real time on purpose: reconnecting must not wait on a test clock.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RECONNECT_MAX)
                    continue
                self._listen_conn = conn
                delay = _RECONNECT_MIN
                _log.info("PostgreSQL LISTEN connection restored", store=repr(self))
                # Notifications sent while it was down are lost: look for work once.
                self._notify_local()
            try:
                await self._watch(conn)
            except (*_CONNECT_ERRORS, asyncpg.ConnectionDoesNotExistError) as exc:
                _log.warning("PostgreSQL LISTEN connection failed a ping", store=repr(self), error=f"{exc}")
            else:
                _log.warning("PostgreSQL LISTEN connection lost; reconnecting", store=repr(self))
            self._listen_conn = None
            conn.terminate()

    @staticmethod
    async def _watch(conn: Any) -> None:
        """Return when ``conn`` closes; raise if a ping fails. Creates no task."""
        wake = asyncio.Event()
        conn.add_termination_listener(lambda _conn: wake.set())
        loop = asyncio.get_running_loop()
        while not conn.is_closed():
            timer = loop.call_later(_PING_INTERVAL, wake.set)
            try:
                await wake.wait()
            finally:
                timer.cancel()
            wake.clear()
            if not conn.is_closed():
                await conn.fetchval("SELECT 1", timeout=_PING_TIMEOUT)

    def _require_pool(self) -> Any:
        pool = self._pool
        if pool is None:
            raise StoreError(
                f"{self!r} is not open; use it inside `async with runner:` or call `await store.open()`"
            )
        return pool

    # producing ------------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[JobSpec], now: float, *, connection: Any = None) -> list[Enqueued]:
        """Insert jobs in one statement (all or none); with ``connection``, inside the
        caller's transaction on that asyncpg connection."""
        if not jobs:
            return []
        if connection is not None and not _is_connection(connection):
            raise TypeError(
                f"enqueue(connection={connection!r}): pass an asyncpg connection (asyncpg.Connection "
                f"or one acquired from an asyncpg pool) to the database of {self!r}"
            )
        columns = _columns(jobs)  # raises TypeError before anything is written
        if connection is not None:
            # Delivered when the caller commits, to this process too: an empty payload.
            return await self._insert(connection, jobs, columns, now, notify_payload="")
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                out = await self._insert(conn, jobs, columns, now, notify_payload=self._instance)
        except _CONNECT_ERRORS as exc:
            if isinstance(exc, asyncpg.PostgresError) and not isinstance(
                exc, asyncpg.PostgresConnectionError
            ):
                raise
            raise StoreError(
                f"could not enqueue {len(jobs)} job(s) into {self!r}: {type(exc).__name__}: {exc}; "
                f"nothing was enqueued by this call, retry it when the server is reachable"
            ) from exc
        self._notify_local()
        return out

    async def _insert(
        self, conn: Any, jobs: Sequence[JobSpec], columns: list[list[Any]], now: float, notify_payload: str
    ) -> list[Enqueued]:
        keys = columns[6]
        if not any(key is not None for key in keys):
            created = await conn.fetchval(self._sql.enqueue, *columns, now, self._channel, notify_payload)
            if len(created) != len(jobs):  # pragma: no cover - only keyed jobs can conflict
                raise StoreError(f"enqueue into {self!r} inserted {len(created)} of {len(jobs)} jobs")
            return [_new_tuple(Enqueued, (spec.id, True)) for spec in jobs]
        # Keys: later specs of the batch with an earlier one's key get that one's
        # answer; the others are inserted unless an active job holds their key.
        # In a transaction (a savepoint inside the caller's), so the batch is
        # all or none even when it takes more than one statement.
        first: dict[str, int] = {}
        send: list[int] = []
        for index, key in enumerate(keys):
            if key is None or key not in first:
                if key is not None:
                    first[key] = index
                send.append(index)
        answers: dict[int, Enqueued] = {}
        async with conn.transaction():
            pending = send
            for _ in range(10):
                subset = [[column[i] for i in pending] for column in columns]
                created = set(
                    await conn.fetchval(self._sql.enqueue, *subset, now, self._channel, notify_payload)
                )
                missing: list[int] = []
                for i in pending:
                    if jobs[i].id in created:
                        answers[i] = _new_tuple(Enqueued, (jobs[i].id, True))
                    else:
                        missing.append(i)
                if not missing:
                    break
                holders = dict(await conn.fetch(self._sql.active_keys, [keys[i] for i in missing]))
                pending = []
                for i in missing:
                    holder = holders.get(keys[i])
                    if holder is None:
                        pending.append(i)  # the holder finished meanwhile: insert again
                    else:
                        answers[i] = _new_tuple(Enqueued, (holder, False))
                if not pending:
                    break
            else:  # pragma: no cover - needs a key holder finishing ten times in a row
                raise StoreError(
                    f"enqueue into {self!r}: keys {[keys[i] for i in pending]} kept changing hands"
                )
        out: list[Enqueued] = []
        for index, key in enumerate(keys):
            answer = answers.get(index)
            if answer is None:
                answer = answers[first[key]] if key is not None else answers[index]
                answer = _new_tuple(Enqueued, (answer.id, False))
            out.append(answer)
        return out

    async def count_pending(self) -> int:
        """Jobs waiting (QUEUED, SCHEDULED, RETRYING) across every process."""
        return int(await self._require_pool().fetchval(self._sql.count_pending))

    # consuming -------------------------------------------------------------------------------
    async def claim(self, request: ClaimRequest) -> list[ClaimedJob]:
        """Claim up to ``limit`` ready jobs in one statement (FOR UPDATE SKIP LOCKED)."""
        pool = self._require_pool()
        now = request.now
        names = request.names
        if names is not None:
            await self._record_names(pool, request.worker, names, now)
        terms = request.lease
        args: list[Any] = [
            now,
            None if names is None else list(names),
            request.limit,
            request.worker,
            terms.fixed,
            terms.without_timeout,
            terms.margin,
            None if request.queues is None else list(request.queues),
        ]
        if request.queue_room:
            limited = list(request.queue_room)
            args += [limited, [max(0, int(request.queue_room[q])) for q in limited]]
            rows = await pool.fetch(self._sql.claim_with_room, *args)
        else:
            rows = await pool.fetch(self._sql.claim, *args)
        next_at = rows[0][18]
        self._next_run_at = (now, None if next_at is None else float(next_at), self._writes)
        if rows[0][0] is None:
            return []
        if len(rows) > 1:
            rows = sorted(rows, key=_claim_order)
        return [_claimed(row) for row in rows]

    async def _record_names(self, pool: Any, worker: str, names: frozenset[str], now: float) -> None:
        """Remember which names this runner handles (for unknown-name stats), now and then."""
        seen = self._names_seen.get(worker)
        if seen is not None and (seen[0] is names or seen[0] == names) and now - seen[1] < _NAMES_REFRESH:
            return
        await pool.execute(self._sql.seen_names, worker, sorted(names), now)
        self._names_seen[worker] = (names, now)

    async def extend_leases(
        self, leases: Sequence[tuple[str, int]], now: float, terms: LeaseTerms
    ) -> LeaseReport:
        """Renew held leases in one statement; report lost ones and cancel requests."""
        if not leases:
            return LeaseReport()
        rows = await self._require_pool().fetch(
            self._sql.extend,
            [job_id for job_id, _ in leases],
            [token for _, token in leases],
            now,
            terms.fixed,
            terms.without_timeout,
            terms.margin,
        )
        held = {row[0]: row[1] for row in rows}
        lost = tuple(job_id for job_id, _ in leases if job_id not in held)
        cancel = tuple(job_id for job_id, _ in leases if held.get(job_id))
        return LeaseReport(lost, cancel)

    async def settle(self, outcomes: Sequence[Outcome], worker: str) -> list[str]:
        """Record a batch of outcomes in one statement, fenced on (id, token, running)."""
        if not outcomes:
            return []
        pool = self._require_pool()
        n = len(outcomes)
        ids: list[str] = [""] * n
        tokens: list[int] = [0] * n
        kinds: list[str] = [""] * n
        ats: list[float] = [0.0] * n
        retry_ats: list[float | None] = [None] * n
        results: list[str | None] = [None] * n
        result_errors: list[str | None] = [None] * n
        error_types: list[str | None] = [None] * n
        error_messages: list[str | None] = [None] * n
        error_tracebacks: list[str | None] = [None] * n
        statuses: list[str | None] = [None] * n
        notes: list[str] = [""] * n
        for i, outcome in enumerate(outcomes):
            job_id, token, kind, at, result, error, retry_at = outcome
            ids[i] = job_id
            tokens[i] = token
            ats[i] = at
            if kind is OutcomeKind.SUCCEEDED:
                kinds[i] = statuses[i] = "succeeded"
                if result is not None:
                    results[i], result_errors[i] = _encode_result(result)
                continue
            kinds[i] = kind.value
            if kind is OutcomeKind.RELEASED:
                notes[i] = "released at shutdown"  # status: back where it came from (SQL)
                continue
            if kind is OutcomeKind.RETRY:
                statuses[i] = "retrying"
                retry_ats[i] = at if retry_at is None else retry_at
            else:
                statuses[i] = kind.value  # dead or cancelled
            if error is not None:
                error_types[i], error_messages[i], error_tracebacks[i] = (
                    error.type,
                    error.message,
                    error.traceback,
                )
                notes[i] = error.type
        rows = await pool.fetch(
            self._sql.settle,
            ids,
            tokens,
            kinds,
            ats,
            retry_ats,
            results,
            result_errors,
            error_types,
            error_messages,
            error_tracebacks,
            statuses,
            notes,
            self._channel,
            self._instance,
        )
        applied = {row[0]: row[1] for row in rows}
        lost = [job_id for job_id in ids if job_id not in applied]
        if self._waiters:
            self._wake_waiters(job_id for job_id, status in applied.items() if status in _FINAL)
        if any(status in ("queued", "retrying") for status in applied.values()):
            self._notify_local()  # the other processes were notified by the statement
        return lost

    async def _announce(self, pool: Any) -> None:
        """Work became ready outside an enqueue: tell this process and the others."""
        self._notify_local()
        await pool.execute("SELECT pg_notify($1, $2)", self._channel, self._instance)

    def _wake_waiters(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for waiter in self._waiters.pop(job_id, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def next_run_at(self, now: float) -> float | None:
        """Earliest future ``run_at`` among waiting jobs.

        Right after a claim (the runner asks when a claim came back short) the
        claim's own answer is used: nothing written here since, and less than a
        second old. A later write elsewhere NOTIFYs, which wakes the runner anyway.
        """
        cached = self._next_run_at
        if cached is not None and cached[2] == self._writes and 0.0 <= now - cached[0] < 1.0:
            return cached[1]
        value = await self._require_pool().fetchval(self._sql.next_run_at, now)
        return None if value is None else float(value)

    # maintenance (run by the leader) ------------------------------------------------------------
    async def rescue_expired(self, now: float) -> list[RescuedJob]:
        """Retry, dead-letter or cancel running jobs whose lease ran out (in batches)."""
        pool = self._require_pool()
        rows = await pool.fetch(self._sql.rescue, now, _RESCUE_BATCH, self._channel, self._instance)
        await pool.execute(self._sql.forget_runners, now - _RUNNER_ROWS_TTL)
        rescued = [RescuedJob(row[0], row[1], row[2], JobStatus(row[3])) for row in rows]
        if self._waiters:
            self._wake_waiters(r.id for r in rescued if r.status is not JobStatus.RETRYING)
        if any(r.status is JobStatus.RETRYING for r in rescued):
            self._notify_local()  # the other processes were notified by the statement
        return rescued

    async def prune(self, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` SUCCEEDED or CANCELLED jobs finished before the time."""
        return await self._delete_finished(["succeeded", "cancelled"], finished_before, limit)

    async def purge(self, status: JobStatus, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` jobs of a final ``status`` finished before the time."""
        if status.value not in _FINAL:
            raise ValueError(f"purge(status={status}): only final statuses can be purged")
        return await self._delete_finished([status.value], finished_before, limit)

    async def _delete_finished(self, statuses: list[str], before: float, limit: int) -> int:
        result = await self._require_pool().execute(self._sql.prune, statuses, before, limit)
        return int(result.rsplit(" ", 1)[-1])  # "DELETE n"

    async def try_lead(self, role: str, holder: str, ttl: float, now: float) -> bool:
        """Acquire or renew ``role``; take it over if it lapsed or its holder's process died."""
        row = await self._require_pool().fetchrow(
            self._sql.try_lead, role, holder, now, ttl, self._session_key
        )
        return row is not None

    async def resign(self, role: str, holder: str) -> None:
        """Give up ``role`` if ``holder`` has it."""
        await self._require_pool().execute(self._sql.resign, role, holder)

    # cron --------------------------------------------------------------------------------------
    async def fire_tick(self, schedule: str, fire_at: float, job: JobSpec, now: float) -> bool:
        """Record the tick and insert its job in one transaction, unless it or a later one fired."""
        columns = _columns((job,))
        async with self._require_pool().acquire() as conn, conn.transaction():
            if await conn.fetchrow(self._sql.fire_tick, schedule, fire_at) is None:
                return False
            await self._insert(conn, (job,), columns, now, notify_payload=self._instance)
        self._notify_local()
        return True

    async def cron_state(self) -> dict[str, float]:
        """The last tick fired of every schedule."""
        rows = await self._require_pool().fetch(self._sql.cron_state)
        return {row[0]: float(row[1]) for row in rows}

    # inspection and repair ------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None."""
        row = await self._require_pool().fetchrow(self._sql.get, job_id)
        return None if row is None else _record(row)

    async def wait_done(self, job_id: str) -> JobRecord:
        """Wait until the job is final. Settles in this process wake the wait at once;
        a job another process runs is re-read with a short backoff (up to 0.5 s)."""
        loop = asyncio.get_running_loop()
        delay = _WAIT_POLL_MIN
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, []).append(waiter)
            try:
                record = await self.get(job_id)
                if record is None:
                    raise JobNotFound(job_id)
                if record.status.is_final:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, delay)
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[job_id]
            delay = min(delay * 2, _WAIT_POLL_MAX)

    async def cancel(self, job_id: str, now: float) -> JobStatus:
        """Cancel a waiting job now, or flag a running one for its runner's next heartbeat."""
        s = _quote(self.schema)
        async with self._require_pool().acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self._sql.get_for_update, job_id)
            if row is None:
                raise JobNotFound(job_id)
            status = row[0]
            if status == "running":
                await conn.execute(f"UPDATE {s}.jobs SET cancel_requested = true WHERE id = $1", job_id)
                return JobStatus.RUNNING
            if status in _FINAL:
                return JobStatus(status)
            await conn.execute(
                f"UPDATE {s}.jobs SET status = 'cancelled', finished_at = $2, "
                f"history = history || jsonb_build_array(jsonb_build_array("
                f"$2::float8, 'cancelled', attempts, NULL::text, 'cancelled while waiting')) "
                f"WHERE id = $1",
                job_id,
                now,
            )
        self._wake_waiters((job_id,))
        return JobStatus.CANCELLED

    async def requeue(self, job_id: str, now: float) -> JobRecord:
        """Put a DEAD or CANCELLED job back in the queue with attempts reset."""
        s = _quote(self.schema)
        pool = self._require_pool()
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self._sql.get_for_update, job_id)
            if row is None:
                raise JobNotFound(job_id)
            status, key = row
            if status not in ("dead", "cancelled"):
                raise InvalidJobState(job_id, status, "only dead or cancelled jobs can be requeued")
            if key is not None:
                holder = await conn.fetchval(
                    f"SELECT id FROM {s}.jobs WHERE key = $1 AND status IN {_ACTIVE_SQL}", key
                )
                if holder is not None:
                    raise InvalidJobState(job_id, status, f"job {holder} with the same key {key!r} is active")
            try:
                record = await conn.fetchrow(
                    f"UPDATE {s}.jobs SET status = 'queued', attempts = 0, trigger = 'requeue', run_at = $2, "
                    f"started_at = NULL, finished_at = NULL, cancel_requested = false, "
                    f"history = history || jsonb_build_array(jsonb_build_array("
                    f"$2::float8, 'queued', 0, NULL::text, 'requeued')) "
                    f"WHERE id = $1 RETURNING {_RECORD_COLUMNS}",
                    job_id,
                    now,
                )
            except asyncpg.UniqueViolationError as exc:  # a job with the key arrived meanwhile
                raise InvalidJobState(job_id, status, f"a job with the same key {key!r} is active") from exc
        await self._announce(pool)
        return _record(record)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs matching every given filter, newest (last enqueued) first."""
        s = _quote(self.schema)
        rows = await self._require_pool().fetch(
            f"SELECT {_RECORD_COLUMNS} FROM {s}.jobs "
            f"WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR queue = $2) "
            f"AND ($3::text IS NULL OR name = $3) ORDER BY seq DESC LIMIT $4",
            None if status is None else status.value,
            queue,
            name,
            limit,
        )
        return [_record(row) for row in rows]

    async def stats(self, now: float) -> StoreStats:
        """Counts by status and queue, the oldest ready job's age, and waiting job
        names that no runner which claimed in the last 5 minutes registered."""
        pool = self._require_pool()
        counts = dict.fromkeys(JobStatus, 0)
        queues: dict[str, dict[JobStatus, int]] = {}
        for queue, status, n in await pool.fetch(self._sql.stats, now):
            by_status = queues.get(queue)
            if by_status is None:
                by_status = queues[queue] = dict.fromkeys(JobStatus, 0)
            by_status[JobStatus(status)] += n
            counts[JobStatus(status)] += n
        oldest = await pool.fetchval(self._sql.oldest, now)
        unknown = {
            row[0]: float(row[1]) for row in await pool.fetch(self._sql.unknown, now, _KNOWN_NAMES_TTL)
        }
        return StoreStats(counts, queues, None if oldest is None else float(oldest), unknown)


# --- rows -----------------------------------------------------------------------------------
def _columns(jobs: Sequence[JobSpec]) -> list[list[Any]]:
    """The batch as the enqueue statement's column arrays; TypeError for a bad payload."""
    n = len(jobs)
    columns: list[list[Any]] = [[None] * n for _ in range(15)]
    (ids, names, queues, priorities, attempts, timeouts, keys, workspaces, triggers,
     enqueued, run_ats, args, kwargs, headers, metas) = columns  # fmt: skip
    for i, spec in enumerate(jobs):
        args[i], kwargs[i], headers[i], metas[i] = _encode_spec(spec)
        ids[i] = spec.id
        names[i] = spec.name
        queues[i] = spec.queue
        priorities[i] = spec.priority
        attempts[i] = spec.max_attempts
        timeouts[i] = spec.timeout
        keys[i] = spec.key
        workspaces[i] = spec.workspace_id
        triggers[i] = spec.trigger
        enqueued[i] = spec.enqueued_at
        run_ats[i] = spec.run_at
    return columns


def _claim_order(row: Any) -> tuple[int, float, int]:
    return row[5], row[11], row[17]


def _claimed(row: Any) -> ClaimedJob:
    (job_id, name, args_text, kwargs_text, queue, priority, max_attempts, timeout, key, workspace_id,
     enqueued_at, run_at, trigger, headers_text, meta_text, attempt, token, _seq, _next_at) = row  # fmt: skip
    decode_error = None
    try:
        args, kwargs = _decode_payload(args_text, kwargs_text)
        headers = _loads_mapping(headers_text)
        meta = _loads_mapping(meta_text)
    except (ValueError, RecursionError) as exc:
        args, kwargs, headers, meta = (), {}, None, None
        decode_error = f"the stored arguments of job {name!r} ({job_id}) cannot be decoded: {exc}"
    spec = _new_tuple(
        JobSpec,
        (job_id, name, args, kwargs, queue, priority, max_attempts, timeout, key, workspace_id,
         enqueued_at, run_at, trigger, headers, meta),
    )  # fmt: skip
    return _new_tuple(ClaimedJob, (spec, attempt, token, trigger, run_at, decode_error))


def _record(row: Any) -> JobRecord:
    (job_id, name, args_text, kwargs_text, queue, priority, status_text, attempts, max_attempts, timeout,
     key, workspace_id, trigger, enqueued_at, run_at, started_at, finished_at, result_text,
     error_type, error_message, error_traceback, worker, cancel_requested, headers_text,
     meta_text, history_text, result_error) = row  # fmt: skip
    try:
        args, kwargs = _decode_payload(args_text, kwargs_text)
    except ValueError:
        args, kwargs = (), {}  # the claim reports it; a record still shows the rest
    status = JobStatus(status_text)
    history = [HistoryEntry(enqueued_at, JobStatus.QUEUED, 0, None, "enqueued")]
    for at, st, attempt, by, note in json.loads(history_text):
        history.append(HistoryEntry(at, JobStatus(st), attempt, by, note))
    # Claims and successes are not logged as they happen: add the current ones.
    if status is JobStatus.RUNNING or status is JobStatus.SUCCEEDED:
        history.append(HistoryEntry(started_at, JobStatus.RUNNING, attempts, worker))
    if status is JobStatus.SUCCEEDED:
        history.append(HistoryEntry(finished_at, status, attempts, worker))
    return JobRecord(
        id=job_id,
        name=name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        status=status,
        attempts=attempts,
        max_attempts=max_attempts,
        timeout=timeout,
        key=key,
        workspace_id=workspace_id,
        trigger=Trigger(trigger),
        enqueued_at=enqueued_at,
        run_at=run_at,
        started_at=started_at,
        finished_at=finished_at,
        result=None if result_text is None else json.loads(result_text),
        error=None
        if error_type is None
        else ErrorInfo(error_type, error_message or "", error_traceback or ""),
        worker=worker,
        cancel_requested=cancel_requested,
        headers=_loads_mapping(headers_text),
        meta=_loads_mapping(meta_text),
        history=tuple(history),
        result_error=result_error,
    )
