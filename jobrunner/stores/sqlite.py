"""The SQLite store: durable, embedded, shared by the processes of one host.

Layout of this module: the schema and its migrations; the JSON codec for
payloads and results (``jobrunner.payload``'s); the transactions, as plain
functions that run in the connection's thread (one thread hop and one commit
per store call, whatever the batch size; the thread itself is
``_sqlite_thread.Connection``); and ``SQLiteStore``, which turns those into
the ``Store`` protocol on the event loop. The state changes follow
``jobrunner.transitions``: the rarer ones apply its functions in the
transaction, claims and successes are SQL of their own.

How a job is found quickly (every claim is a handful of index seeks, whatever
the number of rows):

* ``due`` is 1 for a waiting job whose ``run_at`` has come, 0 for one still
  waiting for it, NULL for every other job. A claim first promotes the due
  ones (a range of the ``(run_at) WHERE due = 0`` index), then reads the best
  ready jobs of each ``(name, queue)`` it may take from the
  ``(name, queue, priority, run_at, seq) WHERE due = 1`` index. Jobs of names
  that no runner asks for and jobs of full queues are never scanned.
* Running jobs are in a ``(lease_until) WHERE status = 'running'`` index, which
  the rescuer reads; finished ones in ``(status, finished_at)``, which pruning
  reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import operator
import os
import re
import sqlite3
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, cast

try:
    import fcntl
except ImportError:  # Windows: no flock; leadership falls back to the lease alone
    _HAVE_FLOCK = False
else:
    _HAVE_FLOCK = True

from jobrunner import defaults, flow
from jobrunner import transitions as rules
from jobrunner.errors import JobNotFound, QueueFull, StoreError
from jobrunner.logs import get_logger
from jobrunner.models import (
    ClaimedJob,
    ClaimRequest,
    Dependency,
    Enqueued,
    ErrorInfo,
    ExpiredJob,
    HistoryEntry,
    JobRecord,
    JobSpec,
    JobStatus,
    LeaderInfo,
    LeaseReport,
    LeaseTerms,
    Outcome,
    OutcomeKind,
    ParentOutcome,
    Progress,
    ProgressReport,
    RescuedJob,
    StoreStats,
    Trigger,
    WorkerInfo,
)
from jobrunner.payload import dumps, loads
from jobrunner.stores._sqlite_thread import Connection
from jobrunner.stores.base import parent_outcome, unstorable

__all__ = ["MIGRATIONS", "SQLiteStore"]

_log = get_logger("jobrunner.stores.sqlite")

T = TypeVar("T")

_new_tuple = tuple.__new__

# RETURNING (3.35) is used by claims, heartbeats and the settle path.
_MIN_SQLITE = (3, 35, 0)

# A runner that has not claimed or heartbeated for this long no longer counts
# as knowing its job names (``stats().unknown_names``); as in the memory store.
_KNOWN_NAMES_TTL = 300.0
# How often a runner's row in the workers table is refreshed by its claims.
_WORKER_REFRESH = 10.0

# --------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "jobs, leaders and cron ticks",
        (
            """
            CREATE TABLE jobrunner_jobs (
                seq INTEGER PRIMARY KEY,      -- insertion order, the last tie-break of claims
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                status TEXT NOT NULL,
                due INTEGER,                  -- waiting: 1 ready, 0 not yet; else NULL
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                timeout REAL,
                key TEXT,
                workspace_id TEXT,
                trigger TEXT NOT NULL,
                enqueued_at REAL NOT NULL,
                run_at REAL NOT NULL,
                started_at REAL,
                finished_at REAL,
                worker TEXT,
                token INTEGER NOT NULL DEFAULT 0,
                lease_until REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                payload TEXT,                 -- JSON [args, kwargs]; NULL for no arguments
                headers TEXT,
                meta TEXT,
                result TEXT,                  -- JSON; NULL for None
                error_type TEXT,
                error_message TEXT,
                error_traceback TEXT,
                history TEXT                  -- JSON lines: [at, status, attempt, worker, note]
            )
            """,
            "CREATE INDEX jobrunner_jobs_ready ON jobrunner_jobs (name, queue, priority, run_at, seq) "
            "WHERE due = 1",
            "CREATE INDEX jobrunner_jobs_delayed ON jobrunner_jobs (run_at) WHERE due = 0",
            "CREATE INDEX jobrunner_jobs_leases ON jobrunner_jobs (lease_until) WHERE status = 'running'",
            "CREATE UNIQUE INDEX jobrunner_jobs_active_key ON jobrunner_jobs (key) "
            "WHERE key IS NOT NULL AND status IN ('queued', 'scheduled', 'running', 'retrying')",
            "CREATE INDEX jobrunner_jobs_finished ON jobrunner_jobs (status, finished_at) "
            "WHERE finished_at IS NOT NULL",
            """
            CREATE TABLE jobrunner_leaders (
                role TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE jobrunner_cron (
                schedule TEXT PRIMARY KEY,
                last_fire_at REAL NOT NULL
            )
            """,
        ),
    ),
    (
        "live runners' job names; results that could not be stored",
        (
            """
            CREATE TABLE jobrunner_workers (
                worker TEXT PRIMARY KEY,
                names TEXT NOT NULL,          -- JSON list of the job names it registered
                seen_at REAL NOT NULL
            )
            """,
            "ALTER TABLE jobrunner_jobs ADD COLUMN result_error TEXT",
        ),
    ),
    (
        "an upper bound of the waiting jobs, for max_pending",
        (
            # See _admit. Seeded with the exact count; the leader resyncs it (_prune),
            # which also covers writes by processes of an older release.
            """
            CREATE TABLE jobrunner_admission (
                one INTEGER PRIMARY KEY CHECK (one = 1),
                upper INTEGER NOT NULL
            )
            """,
            "INSERT INTO jobrunner_admission (one, upper) "
            "SELECT 1, count(*) FROM jobrunner_jobs WHERE due IS NOT NULL",
        ),
    ),
    (
        "job progress; dead and cancelled jobs newest first (the web dashboard)",
        (
            # JSON [fraction, message, attempt, at]; written only by set_progress.
            "ALTER TABLE jobrunner_jobs ADD COLUMN progress TEXT",
            # list_jobs(status=dead|cancelled) pages by seq without a scan of the
            # other jobs. Partial: the hot path (claims, successes) never touches them.
            "CREATE INDEX jobrunner_jobs_dead ON jobrunner_jobs (seq) WHERE status = 'dead'",
            "CREATE INDEX jobrunner_jobs_cancelled ON jobrunner_jobs (seq) WHERE status = 'cancelled'",
        ),
    ),
    (
        "flow control: paused queues, deadlines to start by, rate counters",
        (
            # Read by every claim: empty unless a queue is paused.
            "CREATE TABLE jobrunner_paused (queue TEXT PRIMARY KEY, paused_at REAL NOT NULL)",
            "ALTER TABLE jobrunner_jobs ADD COLUMN expires_at REAL",
            # Waiting jobs with a deadline: a claim probes it for the expired ones,
            # an empty range when no job has one.
            "CREATE INDEX jobrunner_jobs_expiring ON jobrunner_jobs (expires_at) "
            "WHERE expires_at IS NOT NULL AND due IS NOT NULL",
            # Rate limits: one counter per scope (flow.RateLimit.scope), for its
            # current fixed window; read and written only by claims under rate limits.
            """
            CREATE TABLE jobrunner_rates (
                scope TEXT PRIMARY KEY,
                window_start REAL NOT NULL,
                used INTEGER NOT NULL
            )
            """,
        ),
    ),
    (
        "dependencies: jobs enqueued after others (blocked until their parents end)",
        (
            # 1 once a job enqueued after= waits on this one: only settles,
            # rescues and cancels of such jobs look at the edges.
            "ALTER TABLE jobrunner_jobs ADD COLUMN dependents INTEGER NOT NULL DEFAULT 0",
            # A job enqueued after parents: how many have not ended (NULL: no parents).
            "ALTER TABLE jobrunner_jobs ADD COLUMN waiting_on INTEGER",
            "ALTER TABLE jobrunner_jobs ADD COLUMN on_parent_failure TEXT",
            # One row per (child, parent); a parent's outcome is copied in when it
            # ends, so the child reads it even once the parent is pruned.
            """
            CREATE TABLE jobrunner_edges (
                child TEXT NOT NULL,
                position INTEGER NOT NULL,    -- order of the parents as given
                parent TEXT NOT NULL,
                parent_name TEXT NOT NULL,
                status TEXT,                  -- the parent's final status; NULL until it ends
                result TEXT,
                error_type TEXT,
                error_message TEXT,
                PRIMARY KEY (child, position)
            )
            """,
            "CREATE INDEX jobrunner_edges_parent ON jobrunner_edges (parent)",
            # The edges go with their child (prune, purge).
            """
            CREATE TRIGGER jobrunner_edges_of_deleted AFTER DELETE ON jobrunner_jobs
            WHEN old.waiting_on IS NOT NULL
            BEGIN DELETE FROM jobrunner_edges WHERE child = old.id; END
            """,
        ),
    ),
    (
        "deadlines to start by in a table of their own, off the hot path",
        (
            # The partial index of step 5 named ``due``, which every claim and
            # settle writes, so each of them maintained it even with no deadline
            # anywhere. A job's deadline row is written once, with the job
            # (_insert_rows), and read by the claims' probe (_expire), which also
            # drops the rows of jobs that ended: only jobs with a deadline cost
            # anything. (Not a trigger: one on every insert cost more than the index.)
            "CREATE TABLE jobrunner_deadlines (seq INTEGER PRIMARY KEY, expires_at REAL NOT NULL)",
            "CREATE INDEX jobrunner_deadlines_by_time ON jobrunner_deadlines (expires_at)",
            "INSERT INTO jobrunner_deadlines (seq, expires_at) SELECT seq, expires_at FROM jobrunner_jobs "
            "WHERE expires_at IS NOT NULL AND (due IS NOT NULL OR status = 'running')",
            "DROP INDEX jobrunner_jobs_expiring",
            # A job's deadline goes with it (prune, purge): seq values are reused
            # once the newest rows are deleted, and a new job must not inherit one.
            """
            CREATE TRIGGER jobrunner_deadlines_of_deleted AFTER DELETE ON jobrunner_jobs
            WHEN old.expires_at IS NOT NULL
            BEGIN DELETE FROM jobrunner_deadlines WHERE seq = old.seq; END
            """,
        ),
    ),
    (
        "dead and cancelled jobs listed from a table of their own, off the hot path",
        (
            # The partial indexes of step 4 named ``status``, which every claim
            # and success writes, so each of them maintained both (+5k
            # instructions a job). Rows here are written only by changes into or
            # out of these statuses (_apply) and go with their job (the trigger,
            # which runs on deletes only).
            """
            CREATE TABLE jobrunner_unsuccessful (
                status TEXT NOT NULL,
                seq INTEGER NOT NULL,
                PRIMARY KEY (status, seq)
            ) WITHOUT ROWID
            """,
            "INSERT INTO jobrunner_unsuccessful (status, seq) "
            "SELECT status, seq FROM jobrunner_jobs WHERE status IN ('dead', 'cancelled')",
            "DROP INDEX jobrunner_jobs_dead",
            "DROP INDEX jobrunner_jobs_cancelled",
            """
            CREATE TRIGGER jobrunner_unsuccessful_of_deleted AFTER DELETE ON jobrunner_jobs
            WHEN old.status IN ('dead', 'cancelled')
            BEGIN DELETE FROM jobrunner_unsuccessful WHERE status = old.status AND seq = old.seq; END
            """,
        ),
    ),
)
"""Schema steps, applied in order, each recorded in ``jobrunner_migrations``.

Append only: a released step never changes, so a newer release opens an older
file by applying the steps it lacks."""

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS jobrunner_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
)

_QUEUED = rules.QUEUED
_SCHEDULED = rules.SCHEDULED
_SUCCEEDED = rules.SUCCEEDED
_CANCELLED = rules.CANCELLED
_BLOCKED = rules.BLOCKED
_FINAL = rules.FINAL

# --------------------------------------------------------------------------------------
# JSON: payloads, results, history (jobrunner.payload's codec, as every store)
# --------------------------------------------------------------------------------------


_EXPIRES_AT = 16  # in a row of _encode_spec


def _encode_spec(spec: JobSpec, now: float) -> tuple[Any, ...]:
    """The row to insert for ``spec`` (payload already normalized by the runner)."""
    args, kwargs = spec.args, spec.kwargs
    try:
        payload = dumps((args, kwargs)) if args or kwargs else None
        headers = None if spec.headers is None else dumps(spec.headers)
        meta = None if spec.meta is None else dumps(spec.meta)
    except (TypeError, ValueError):
        raise unstorable(spec) from None
    run_at = spec.run_at
    ready = run_at <= now
    return (
        spec.id, spec.name, spec.queue, spec.priority, _QUEUED if ready else _SCHEDULED, 1 if ready else 0,
        spec.max_attempts, spec.timeout, spec.key, spec.workspace_id, spec.trigger, spec.enqueued_at,
        run_at, payload, headers, meta, spec.expires_at,
    )  # fmt: skip


def _decode_payload(payload: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if payload is None:
        return (), {}
    args, kwargs = loads(payload)
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("expected a JSON array [args, kwargs]")
    return tuple(args), kwargs


def _encode_result(outcome: Outcome) -> str | None:
    """A success's result as JSON (already normalized by the executor)."""
    if outcome.result is None:
        return None
    try:
        return dumps(outcome.result)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the result of job {outcome.job_id} cannot be stored as JSON ({exc}); results reach a store "
            f"normalized by jobrunner.payload.check_result"
        ) from None


def _history_line(line: rules.LogLine) -> str:
    return dumps(line) + "\n"


# --------------------------------------------------------------------------------------
# transactions (run in the connection's thread)
# --------------------------------------------------------------------------------------

_ACTIVE_SQL = "('queued', 'scheduled', 'running', 'retrying')"

_INSERT_COLUMNS = """id, name, queue, priority, status, due, max_attempts, timeout, key,
    workspace_id, trigger, enqueued_at, run_at, payload, headers, meta, expires_at"""
# Python 3.11's sqlite3 binds a None through its adapter protocol, a failed
# attribute lookup and all (about 3,500 instructions each, against a few
# hundred for a value): a new row has up to seven, so rows are inserted with
# NULL written into the statement instead, one statement per pattern of NULLs.
_NULLABLE_AT = (7, 8, 9, 13, 14, 15, 16)  # timeout, key, workspace_id, payload, headers, meta, expires_at
_NULLABLE = operator.itemgetter(*_NULLABLE_AT)
_NO_NULLS = (None,) * len(_NULLABLE_AT)
_INSERTS: dict[tuple[bool, ...], tuple[str, tuple[bool, ...]]] = {}


def _insert_of(row: tuple[Any, ...]) -> tuple[str, tuple[bool, ...]]:
    """``(statement, which values of the row it binds)`` for a row of ``_encode_spec``."""
    nulls = tuple(map(operator.is_, _NULLABLE(row), _NO_NULLS))
    found = _INSERTS.get(nulls)
    if found is None:
        # From the pattern, not the row: every other column is bound, so a row
        # with a None where the schema refuses one fails alone, as it should.
        bound = [True] * len(row)
        for at, null in zip(_NULLABLE_AT, nulls, strict=True):
            bound[at] = not null
        values = ", ".join("?" if keep else "NULL" for keep in bound)
        statement = f"INSERT INTO jobrunner_jobs ({_INSERT_COLUMNS}) VALUES ({values})"
        found = _INSERTS[nulls] = (statement, tuple(bound))
    return found


def _insert(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert rows of ``_encode_spec`` in order (their seq is their order), each run
    of consecutive rows with the same NULLs by one statement."""
    for (statement, bound), run in itertools.groupby(rows, key=_insert_of):
        conn.executemany(statement, [tuple(itertools.compress(row, bound)) for row in run])


_ACTIVE_KEY = f"SELECT id FROM jobrunner_jobs WHERE key = ? AND status IN {_ACTIVE_SQL}"

_PROMOTE = """
UPDATE jobrunner_jobs SET due = 1, status = CASE status WHEN 'scheduled' THEN 'queued' ELSE status END
WHERE due = 0 AND run_at <= ?
"""
_FIRST_NAME = "SELECT name FROM jobrunner_jobs WHERE due = 1 ORDER BY name LIMIT 1"
_NEXT_NAME = "SELECT name FROM jobrunner_jobs WHERE due = 1 AND name > ? ORDER BY name LIMIT 1"
_FIRST_QUEUE = "SELECT queue FROM jobrunner_jobs WHERE due = 1 AND name = ? ORDER BY queue LIMIT 1"
_NEXT_QUEUE = (
    "SELECT queue FROM jobrunner_jobs WHERE due = 1 AND name = ? AND queue > ? ORDER BY queue LIMIT 1"
)
_CANDIDATES = """
SELECT priority, run_at, seq, queue FROM jobrunner_jobs
WHERE due = 1 AND name = ? AND queue = ? AND run_at <= ?
ORDER BY priority, run_at, seq LIMIT ?
"""
# RETURNING hands back a REAL column's whole-number values as integers (SQLite
# stores them so); the casts give the floats a SELECT would.
_CLAIM = """
UPDATE jobrunner_jobs SET status = 'running', due = NULL, attempts = attempts + 1, token = token + 1,
    started_at = :now, worker = :worker, cancel_requested = 0,
    lease_until = :now + coalesce(:fixed, coalesce(timeout, :without) + :margin)
WHERE seq IN (SELECT value FROM json_each(:seqs))
RETURNING priority, CAST(run_at AS REAL), seq, id, name, queue, max_attempts, CAST(timeout AS REAL), key,
    workspace_id, CAST(enqueued_at AS REAL), trigger, payload, headers, meta, attempts, token,
    CAST(expires_at AS REAL)
"""
_PAUSED = "SELECT queue FROM jobrunner_paused"
_CANDIDATES_LIMITED = """
SELECT priority, run_at, seq, workspace_id FROM jobrunner_jobs
WHERE due = 1 AND name = ? AND queue = ? AND run_at <= ?
  AND (workspace_id IS NULL OR workspace_id NOT IN (SELECT value FROM json_each(?)))
ORDER BY priority, run_at, seq LIMIT ?
"""
_RATES = "SELECT scope, window_start, used FROM jobrunner_rates"
_SPEND = """
INSERT INTO jobrunner_rates (scope, window_start, used) VALUES (?, ?, ?)
ON CONFLICT (scope) DO UPDATE SET window_start = excluded.window_start, used = excluded.used
"""
_SEEN = """
INSERT INTO jobrunner_workers (worker, names, seen_at) VALUES (?, ?, ?)
ON CONFLICT (worker) DO UPDATE SET names = excluded.names, seen_at = excluded.seen_at
"""

# A job's state as transitions.JobState, with what the changes below need to know
# of its spec. The result and error columns are left out: see _UNREAD.
_STATE = """
SELECT seq, id, name, key, max_attempts, status, attempts, token, trigger, run_at, started_at,
    finished_at, worker, lease_until, cancel_requested, dependents
FROM jobrunner_jobs
"""
_RUNNING_OF = _STATE + "WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running'"
# In lease order (then enqueue order), as every store rescues: the order in which
# rescued parents tell their children.
_EXPIRED = _STATE + "WHERE status = 'running' AND lease_until < ? ORDER BY lease_until, seq"
_STATE_OF = _STATE + "WHERE id = ?"
# Deadlines that have come (usually none: one probe of an index).
_LAPSED = "SELECT seq FROM jobrunner_deadlines WHERE expires_at <= ?"
_EXPIRING = (
    _STATE.replace("\nFROM", ", queue, expires_at\nFROM")
    + "WHERE seq IN (SELECT value FROM json_each(?)) AND due IS NOT NULL AND expires_at <= ? "
    + "ORDER BY expires_at, seq"
)
# Dead and cancelled jobs, for list_jobs (see schema step 8).
_UNSUCCESSFUL = (rules.DEAD, rules.CANCELLED)
_LIST = "INSERT OR IGNORE INTO jobrunner_unsuccessful (status, seq) VALUES (?, ?)"
_UNLIST = "DELETE FROM jobrunner_unsuccessful WHERE status = ? AND seq = ?"
_DEADLINES_OF = (
    "INSERT OR REPLACE INTO jobrunner_deadlines (seq, expires_at) "
    "SELECT seq, expires_at FROM jobrunner_jobs "
    "WHERE id IN (SELECT value FROM json_each(?)) AND expires_at IS NOT NULL"
)
# A deadline matters while its job may still wait: keep those of running jobs
# (a retry waits again), drop the rest (ended, expired just now, or deleted).
_DROP_DEADLINES = """
DELETE FROM jobrunner_deadlines WHERE seq IN (SELECT value FROM json_each(?))
AND NOT EXISTS (SELECT 1 FROM jobrunner_jobs j WHERE j.seq = jobrunner_deadlines.seq AND j.status = 'running')
"""

_SUCCEED = """
UPDATE jobrunner_jobs SET status = 'succeeded', due = NULL, lease_until = NULL, finished_at = ?, result = ?
WHERE seq = ?
"""
# A None result, the common one, written as NULL rather than bound (see _insert_of).
_SUCCEED_WITH_NONE = _SUCCEED.replace("result = ?", "result = NULL")
# Writes a transitions.Change: every field a change other than a claim or a
# success may touch (a claim and a success have their own statements, above).
_APPLY_FIELDS = """
UPDATE jobrunner_jobs SET status = ?, due = ?, attempts = ?, trigger = ?, run_at = ?, started_at = ?,
    finished_at = ?, lease_until = ?, cancel_requested = ?,"""
_APPLY = _APPLY_FIELDS + " history = coalesce(history, '') || ? WHERE seq = ?"
_APPLY_WITH_ERROR = (
    _APPLY_FIELDS
    + " error_type = ?, error_message = ?, error_traceback = ?, history = coalesce(history, '') || ? WHERE seq = ?"
)
_EXTEND = """
UPDATE jobrunner_jobs SET lease_until = ? + coalesce(?, coalesce(timeout, ?) + ?)
WHERE id = ? AND token = ? AND status = 'running'
RETURNING cancel_requested
"""
# Jobs made to wait raise the bound that admission reads (see _admit).
_MORE_WAITING = "UPDATE jobrunner_admission SET upper = upper + ?"
# Waiting jobs, counted up to a cap from the two waiting indexes (due 1 and 0).
_COUNT_WAITING = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM jobrunner_jobs WHERE due = 1 LIMIT ?1))
     + (SELECT count(*) FROM (SELECT 1 FROM jobrunner_jobs WHERE due = 0 LIMIT ?1))
"""

_RECORD_COLUMNS = """id, name, payload, queue, priority, status, attempts, max_attempts, timeout, key,
    workspace_id, trigger, enqueued_at, run_at, started_at, finished_at, result, error_type,
    error_message, error_traceback, worker, cancel_requested, headers, meta, history, result_error,
    progress, expires_at"""

_RECORD_COLUMNS_OF_J = ", ".join(f"j.{column.strip()}" for column in _RECORD_COLUMNS.split(","))


def _insert_rows(
    conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], max_pending: int | None = None
) -> list[Enqueued]:
    """Insert rows (``_encode_spec``); a row whose key is active yields that job.

    With ``max_pending``, QueueFull (nothing written) unless ``transitions.admits``
    the batch (see ``_admit``).
    """
    out: list[Enqueued] = []
    fresh: list[tuple[Any, ...]] = []
    batch_keys: dict[str, str] = {}
    for row in rows:
        key = row[8]
        if key is not None:
            holder = batch_keys.get(key)
            if holder is None:
                found = conn.execute(_ACTIVE_KEY, (key,)).fetchone()
                holder = None if found is None else found[0]
            if holder is not None:
                out.append(_new_tuple(Enqueued, (holder, False)))
                continue
            batch_keys[key] = row[0]
        fresh.append(row)
        out.append(_new_tuple(Enqueued, (row[0], True)))
    if fresh:
        if max_pending is not None:
            _admit(conn, len(fresh), max_pending)
        _insert(conn, fresh)
        conn.execute(_MORE_WAITING, (len(fresh),))
        timed = [row[0] for row in fresh if row[_EXPIRES_AT] is not None]
        if timed:
            conn.execute(_DEADLINES_OF, (dumps(timed),))
    return out


def _admit(conn: sqlite3.Connection, created: int, max_pending: int) -> None:
    """QueueFull unless ``created`` more jobs fit under ``max_pending``.

    Counting the waiting jobs costs an index step each, so it is done only when
    needed: ``jobrunner_admission.upper`` is an upper bound of them, raised by
    every write that makes jobs wait (``_MORE_WAITING``) and never lowered by
    the writes that take them out (claims, cancels), so a batch that fits under
    it fits. Otherwise they are counted, up to what decides, and an exact count
    becomes the bound. Writers are serialized (BEGIN IMMEDIATE), so neither can
    go stale before the insert, whichever process writes next.
    """
    upper = conn.execute("SELECT upper FROM jobrunner_admission").fetchone()[0]
    if upper + created <= max_pending:
        return
    cap = max(1, max_pending - created + 1)
    pending = conn.execute(_COUNT_WAITING, (cap,)).fetchone()[0]
    if pending < cap:
        conn.execute("UPDATE jobrunner_admission SET upper = ?", (pending,))
    if not rules.admits(pending, created, max_pending):
        raise QueueFull(pending, max_pending)


def _due_names(conn: sqlite3.Connection) -> Iterator[str]:
    """Names of ready jobs, by a skip scan of the ready index (one seek per name)."""
    row = conn.execute(_FIRST_NAME).fetchone()
    while row is not None:
        yield row[0]
        row = conn.execute(_NEXT_NAME, row).fetchone()


def _due_queues(conn: sqlite3.Connection, name: str) -> Iterator[str]:
    """Queues holding ready jobs of ``name``, by a skip scan (one seek per queue)."""
    row = conn.execute(_FIRST_QUEUE, (name,)).fetchone()
    while row is not None:
        queue = row[0]
        yield queue
        row = conn.execute(_NEXT_QUEUE, (name, queue)).fetchone()


def _expire(conn: sqlite3.Connection, now: float) -> list[ExpiredJob]:
    """End the waiting jobs whose deadline has come (``transitions.lapsed``)."""
    gone: list[ExpiredJob] = []
    lapsed = conn.execute(_LAPSED, (now,)).fetchall()
    if not lapsed:
        return gone
    seqs = dumps([seq for (seq,) in lapsed])
    for row in conn.execute(_EXPIRING, (seqs, now)).fetchall():
        seq, job_id, name, _, _, state, _ = _state(row[:16])  # no dependents: check_dependencies
        queue, expires_at = row[16], row[17]
        _apply(conn, seq, state, rules.lapsed(state, now), now)
        gone.append(ExpiredJob(job_id, name, queue, expires_at))
    conn.execute(_DROP_DEADLINES, (seqs,))
    return gone


def _running_counts(conn: sqlite3.Connection, column: str, keys: Iterable[str]) -> dict[str, int]:
    """RUNNING jobs per value of ``column`` (queue or name) among ``keys``, from the lease index."""
    sql = (
        f"SELECT {column}, count(*) FROM jobrunner_jobs INDEXED BY jobrunner_jobs_leases "
        f"WHERE status = 'running' AND {column} IN (SELECT value FROM json_each(?)) GROUP BY {column}"
    )
    return dict(conn.execute(sql, (dumps(list(keys)),)).fetchall())


class _Claimed(NamedTuple):
    jobs: list[ClaimedJob]
    expired: list[ExpiredJob]
    wake_at: float | None
    """When a rate window that held jobs back ends (``flow``); None if none did."""


def _claim(
    conn: sqlite3.Connection,
    request: ClaimRequest,
    names: Iterable[str] | None,
    seen: tuple[str, str, float] | None,
) -> _Claimed:
    now, limit, room = request.now, request.limit, request.queue_room
    expired = _expire(conn, now)
    conn.execute(_PROMOTE, (now,))
    if seen is not None:
        conn.execute(_SEEN, seen)
    paused = {row[0] for row in conn.execute(_PAUSED)}
    limits = request.limits
    if limits:
        return _claim_limited(conn, request, names, limits, paused, expired)
    candidates: list[tuple[int, float, int, str]] = []
    only = request.queues
    for name in _due_names(conn) if names is None else names:
        for queue in _due_queues(conn, name) if only is None else only:
            if paused and queue in paused:
                continue
            cap = min(limit, room[queue]) if queue in room else limit
            if cap > 0:
                candidates += conn.execute(_CANDIDATES, (name, queue, now, cap)).fetchall()
    if not candidates:
        return _Claimed([], expired, None)
    chosen = rules.choose(((p, r, seq, q, seq) for p, r, seq, q in candidates), limit, room)
    return _Claimed(_take(conn, request, chosen), expired, None)


def _take(conn: sqlite3.Connection, request: ClaimRequest, chosen: Sequence[int]) -> list[ClaimedJob]:
    """Claim the rows ``chosen`` (their seqs)."""
    lease = request.lease
    rows = conn.execute(
        _CLAIM,
        {
            "now": request.now,
            "worker": request.worker,
            "fixed": lease.fixed,
            "without": lease.without_timeout,
            "margin": lease.margin,
            "seqs": dumps(chosen),
        },
    ).fetchall()
    rows.sort()
    return [_claimed(row) for row in rows]


def _claim_limited(
    conn: sqlite3.Connection,
    request: ClaimRequest,
    names: Iterable[str] | None,
    limits: flow.Limits,
    paused: set[str],
    expired: list[ExpiredJob],
) -> _Claimed:
    """A claim under global limits (``jobrunner.flow``). Writers are serialized
    (BEGIN IMMEDIATE): the running counts and rate counters read here cannot
    change before this transaction commits, in this process or any other."""
    now, limit = request.now, request.limit
    queue_room, name_room = flow.room(
        limits,
        _running_counts(conn, "queue", limits.queues) if limits.queues else {},
        _running_counts(conn, "name", limits.names) if limits.names else {},
    )
    room = dict(request.queue_room)
    for queue, n in queue_room.items():
        room[queue] = min(room.get(queue, n), n)
    counters: dict[str, flow.Window] = {}
    excluded: list[flow.Exclusion] = []
    if limits.rates:
        counters = {scope: (start, used) for scope, start, used in conn.execute(_RATES)}
        excluded = flow.exclusions(limits, counters, now)
    candidates: list[tuple[int, float, int, str, str, str | None, int]] = []
    only = request.queues
    for name in _due_names(conn) if names is None else names:
        name_cap = name_room.get(name, limit)
        if name_cap <= 0:
            continue
        for queue in _due_queues(conn, name) if only is None else only:
            if paused and queue in paused:
                continue
            cap = min(limit, room[queue]) if queue in room else limit
            cap = min(cap, name_cap)
            matching = [
                x
                for x in excluded
                if (x.queue is None or x.queue == queue) and (x.name is None or x.name == name)
            ]
            if cap <= 0 or any(x.workspace is None for x in matching):
                continue  # full, or a rate scope of the whole queue or name is spent
            rows = conn.execute(
                _CANDIDATES_LIMITED, (name, queue, now, dumps([x.workspace for x in matching]), cap)
            )
            candidates += [(p, r, seq, queue, name, ws, seq) for p, r, seq, ws in rows.fetchall()]
    wake_at = flow.spent_wake(limits, counters, now) if excluded else None
    if not candidates:
        return _Claimed([], expired, wake_at)
    plan = flow.plan(candidates, limit, limits, room, name_room, counters, now)
    if plan.counters:
        conn.executemany(_SPEND, [(scope, start, used) for scope, (start, used) in plan.counters.items()])
    if plan.wake_at is not None:
        wake_at = plan.wake_at if wake_at is None else min(wake_at, plan.wake_at)
    return _Claimed(_take(conn, request, cast("list[int]", plan.chosen)), expired, wake_at)


def _claimed(row: tuple[Any, ...]) -> ClaimedJob:
    (
        priority, run_at, _, job_id, name, queue, max_attempts, timeout, key, workspace_id,
        enqueued_at, trigger, payload, headers, meta, attempts, token, expires_at,
    ) = row  # fmt: skip
    decode_error = None
    try:
        args, kwargs = _decode_payload(payload)
        headers = None if headers is None else loads(headers)
        meta = None if meta is None else loads(meta)
    except (ValueError, TypeError) as exc:
        args, kwargs, headers, meta = (), {}, None, None
        decode_error = (
            f"the stored arguments of job {name!r} ({job_id}) are not valid JSON ({exc}); "
            f"the row was written by something other than jobrunner or is damaged"
        )
    spec = _new_tuple(
        JobSpec,
        (job_id, name, args, kwargs, queue, priority, max_attempts, timeout, key, workspace_id,
         enqueued_at, run_at, trigger, headers, meta, expires_at),
    )  # fmt: skip
    return _new_tuple(ClaimedJob, (spec, attempts, token, trigger, run_at, decode_error))


_UNREAD = ErrorInfo("", "", "")
"""The error of a state read without its error columns: a change that keeps the
error returns this very object, and its columns are then left as they are."""


def _state(row: tuple[Any, ...]) -> tuple[int, str, str, str | None, int, rules.JobState, int]:
    """``(seq, id, name, key, max_attempts, state, dependents)`` of a row read with ``_STATE``."""
    (seq, job_id, name, key, max_attempts, status, attempts, token, trigger, run_at, started_at,
     finished_at, worker, lease_until, cancel, dependents) = row  # fmt: skip
    state = rules.JobState(
        status, attempts, token, trigger, run_at, started_at, finished_at, worker, lease_until,
        bool(cancel), None, _UNREAD,
    )  # fmt: skip
    return seq, job_id, name, key, max_attempts, state, dependents


def _apply(conn: sqlite3.Connection, seq: int, old: rules.JobState, change: rules.Change, now: float) -> None:
    """Write a ``transitions`` change of the row ``seq`` made at ``now``."""
    new = change.state
    if new.status in rules.WAITING and old.status not in rules.WAITING:
        conn.execute(_MORE_WAITING, (1,))
    due = (1 if new.run_at <= now else 0) if new.status in rules.WAITING else None
    fields = (
        new.status, due, new.attempts, new.trigger, new.run_at, new.started_at, new.finished_at,
        new.lease_until, int(new.cancel_requested),
    )  # fmt: skip
    history = "".join(map(_history_line, change.log))
    if new.error is _UNREAD:
        conn.execute(_APPLY, (*fields, history, seq))
    else:
        conn.execute(_APPLY_WITH_ERROR, (*fields, *_error_columns(new.error), history, seq))
    if new.status != old.status:
        if old.status in _UNSUCCESSFUL:
            conn.execute(_UNLIST, (old.status, seq))
        if new.status in _UNSUCCESSFUL:
            conn.execute(_LIST, (new.status, seq))


def _settle(
    conn: sqlite3.Connection, outcomes: Sequence[Outcome], results: Sequence[str | None]
) -> tuple[list[str], list[str], bool]:
    """Apply fenced outcomes in order; return (ids fenced out, ids now final, work became ready).

    ``results``: each outcome's result as JSON (successes only).
    """
    running = {row[1]: _state(row) for row in conn.execute(_RUNNING_OF, (dumps([o[0] for o in outcomes]),))}
    lost: list[str] = []
    final: list[str] = []
    succeeded: list[tuple[Any, ...]] = []
    succeeded_with_none: list[tuple[float, int]] = []
    ready = False
    parents: list[tuple[str, float]] = []  # jobs that others wait on, ended
    for outcome, result in zip(outcomes, results, strict=True):
        job_id = outcome.job_id
        current = running.get(job_id)
        if current is None or not rules.holds(current[5], outcome.token):
            lost.append(job_id)
            continue
        del running[job_id]  # no longer running: a second outcome for the attempt is lost
        seq = current[0]
        if outcome.kind is OutcomeKind.SUCCEEDED:
            if result is None:
                succeeded_with_none.append((outcome.at, seq))
            else:
                succeeded.append((outcome.at, result, seq))
            final.append(job_id)
            if current[6]:
                parents.append((job_id, outcome.at))
            continue
        change = rules.settled(current[5], outcome)
        assert change is not None  # held: checked above
        _apply(conn, seq, current[5], change, outcome.at)
        if change.state.status in rules.FINAL:
            final.append(job_id)
            if current[6]:
                parents.append((job_id, outcome.at))
        else:
            ready = True
    if succeeded:
        conn.executemany(_SUCCEED, succeeded)
    if succeeded_with_none:
        conn.executemany(_SUCCEED_WITH_NONE, succeeded_with_none)
    for parent_id, at in parents:
        ready |= _tell_children(conn, parent_id, at, final)
    return lost, final, ready


def _error_columns(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    return (None, None, None) if error is None else (error.type, error.message, error.traceback)


def _extend(
    conn: sqlite3.Connection,
    leases: Sequence[tuple[str, int]],
    now: float,
    terms: LeaseTerms,
    workers: Sequence[str],
) -> LeaseReport:
    # A runner too busy to claim still heartbeats: its job names stay known.
    conn.executemany("UPDATE jobrunner_workers SET seen_at = ? WHERE worker = ?", [(now, w) for w in workers])
    lost: list[str] = []
    cancel: list[str] = []
    fixed, without, margin = terms.fixed, terms.without_timeout, terms.margin
    for job_id, token in leases:
        row = conn.execute(_EXTEND, (now, fixed, without, margin, job_id, token)).fetchone()
        if row is None:
            lost.append(job_id)
        elif row[0]:
            cancel.append(job_id)
    return LeaseReport(tuple(lost), tuple(cancel))


def _rescue(conn: sqlite3.Connection, now: float) -> tuple[list[RescuedJob], list[str]]:
    """The jobs rescued, and the jobs that ended because a rescued parent did."""
    rescued: list[RescuedJob] = []
    children: list[str] = []
    for row in conn.execute(_EXPIRED, (now,)).fetchall():
        seq, job_id, name, _, max_attempts, state, dependents = _state(row)
        change = rules.rescued(state, now, max_attempts)
        _apply(conn, seq, state, change, now)
        rescued.append(RescuedJob(job_id, name, state.attempts, JobStatus(change.state.status)))
        if dependents and change.state.status in rules.FINAL:
            _tell_children(conn, job_id, now, children)
    return rescued, children


def _cancel(conn: sqlite3.Connection, job_id: str, now: float) -> tuple[str, list[str]] | None:
    """The status after the cancel and the jobs that ended with it (its
    dependents), or None if there is no such job."""
    row = conn.execute(_STATE_OF, (job_id,)).fetchone()
    if row is None:
        return None
    seq, _, _, _, _, state, dependents = _state(row)
    if state.status in rules.FINAL:
        return state.status, []  # left as it is
    change = rules.cancelled(state, now)
    _apply(conn, seq, state, change, now)
    ended: list[str] = []
    if dependents and change.state.status in rules.FINAL:
        _tell_children(conn, job_id, now, ended)
    return change.state.status, ended


def _requeue(conn: sqlite3.Connection, job_id: str, now: float) -> tuple[Any, ...] | None:
    """The requeued row, or None if there is no such job; InvalidJobState if not allowed."""
    row = conn.execute(_STATE_OF, (job_id,)).fetchone()
    if row is None:
        return None
    seq, _, _, key, _, state, _ = _state(row)
    holder = None
    if key is not None:
        found = conn.execute(_ACTIVE_KEY, (key,)).fetchone()
        holder = None if found is None else found[0]
    _apply(conn, seq, state, rules.requeued(job_id, state, now, key, holder), now)
    # Waiting again: its deadline holds again (the probe may have dropped it).
    conn.execute(_DEADLINES_OF, (dumps([job_id]),))
    return cast(
        "tuple[Any, ...]",
        conn.execute(f"SELECT {_RECORD_COLUMNS} FROM jobrunner_jobs WHERE seq = ?", (seq,)).fetchone(),
    )


def _set_progress(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, int]]) -> list[str]:
    update = "UPDATE jobrunner_jobs SET progress = ? WHERE id = ? AND token = ? AND status = 'running'"
    return [row[1] for row in rows if not conn.execute(update, row).rowcount]


# A parent's children in the order they were enqueued (rowid: insertion order).
_EDGES_OF = "SELECT child, position, status FROM jobrunner_edges WHERE parent = ? ORDER BY rowid"
_RECORD_EDGE = """
UPDATE jobrunner_edges SET status = ?, result = ?, error_type = ?, error_message = ? WHERE child = ? AND position = ?
"""
_ENDED_AS = "SELECT status, result, error_type, error_message FROM jobrunner_jobs WHERE id = ?"
_DEADLINE_OF = "SELECT expires_at, status FROM jobrunner_jobs WHERE id = ?"
_WAITS_OF = "SELECT waiting_on, on_parent_failure FROM jobrunner_jobs WHERE id = ?"
_INSERT_EDGE = """
INSERT INTO jobrunner_edges (child, position, parent, parent_name, status, result, error_type, error_message)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def _outcome_columns(row: tuple[Any, ...]) -> tuple[str, str | None, str | None, str | None]:
    """(status, result, error type, error message) of a final job read with ``_ENDED_AS``,
    as its edges keep them: the result of a success, the error of a failure."""
    status, result, error_type, error_message = row
    if status == _SUCCEEDED:
        return status, result, None, None
    return status, None, error_type, error_message


def _tell_children(conn: sqlite3.Connection, parent_id: str, now: float, ended: list[str]) -> bool:
    """``transitions.parent_ended`` for every child of ``parent_id``, which just
    ended, and transitively for children that end too; ``ended`` collects those.
    Returns True if a child became ready to run."""
    ready = False
    work = [parent_id]  # breadth first, as every store tells them
    while work:
        parent = work.pop(0)
        outcome = _outcome_columns(conn.execute(_ENDED_AS, (parent,)).fetchone())
        for child_id, position, before in conn.execute(_EDGES_OF, (parent,)).fetchall():
            conn.execute(_RECORD_EDGE, (*outcome, child_id, position))  # its latest end
            if before is not None:
                continue  # a requeued parent ended again: counted the first time
            row = conn.execute(_STATE_OF, (child_id,)).fetchone()
            seq, _, _, _, _, state, dependents = _state(row)
            if state.status != _BLOCKED:
                continue
            waiting, on_failure = conn.execute(_WAITS_OF, (child_id,)).fetchone()
            conn.execute("UPDATE jobrunner_jobs SET waiting_on = ? WHERE seq = ?", (waiting - 1, seq))
            change = rules.parent_ended(state, now, parent, outcome[0], waiting - 1, on_failure)
            if change is None or change.state.status == state.status:
                continue
            _apply(conn, seq, state, change, now)
            if change.state.status in rules.FINAL:
                ended.append(child_id)
                if dependents:
                    work.append(child_id)
            else:
                ready = True
    return ready


def _enqueue_after(
    conn: sqlite3.Connection,
    specs: Sequence[JobSpec],
    after: Sequence[Dependency],
    now: float,
    max_pending: int | None,
) -> tuple[list[Enqueued], list[str]]:
    """Insert jobs and their edges (see ``Store.enqueue_after``); also return the ids
    of jobs inserted already ended (a parent had failed)."""
    rules.check_dependencies(specs, [dependency.parents for dependency in after])
    batch: set[str] = set()
    for spec, dependency in zip(specs, after, strict=True):
        for parent_id in dependency.parents:
            if parent_id in batch:
                continue
            found = conn.execute(_DEADLINE_OF, (parent_id,)).fetchone()
            if found is None:
                raise JobNotFound(parent_id)
            if found[0] is not None and found[1] not in _FINAL:
                raise rules.deadline_parent(parent_id)
        batch.add(spec.id)
    if max_pending is not None:
        _admit(conn, len(specs), max_pending)  # blocked ones included (see Store.enqueue_after)
    out: list[Enqueued] = []
    ended: list[str] = []
    alias: dict[str, str] = {}  # a job of the batch answered by its key's holder -> the holder
    for spec, dependency in zip(specs, after, strict=True):
        if not dependency.parents:
            (answer,) = _insert_rows(conn, (_encode_spec(spec, now),))
            if not answer.created:
                alias[spec.id] = answer.id
            out.append(answer)
            continue
        parents = tuple(dict.fromkeys(alias.get(p, p) for p in dependency.parents))
        outcomes: list[tuple[str, str, tuple[str, str | None, str | None, str | None] | None]] = []
        for parent_id in parents:
            name, status = conn.execute(
                "UPDATE jobrunner_jobs SET dependents = 1 WHERE id = ? RETURNING name, status", (parent_id,)
            ).fetchone()
            done = None
            if status in _FINAL:
                done = _outcome_columns(conn.execute(_ENDED_AS, (parent_id,)).fetchone())
            outcomes.append((parent_id, name, done))
        waiting = sum(1 for _, _, done in outcomes if done is None)
        ended_parents = [(p, done[0]) for p, _, done in outcomes if done is not None]
        change = rules.after(spec, now, ended_parents, waiting, dependency.on_failure)
        _insert(conn, (_encode_spec(spec, now),))
        (seq,) = conn.execute(
            "UPDATE jobrunner_jobs SET waiting_on = ?, on_parent_failure = ? WHERE id = ? RETURNING seq",
            (waiting, dependency.on_failure, spec.id),
        ).fetchone()
        base = rules.enqueued(spec, now)
        if change.state.status == base.status:
            conn.execute(_MORE_WAITING, (1,))  # inserted waiting, and it stays so
        else:  # blocked or ended: not waiting
            _apply(conn, seq, base, change, now)
        if change.state.status in _FINAL:
            ended.append(spec.id)
        for position, (parent_id, name, done) in enumerate(outcomes):
            conn.execute(_INSERT_EDGE, (spec.id, position, parent_id, name, *(done or (None,) * 4)))
        out.append(Enqueued(spec.id, True))
    return out, ended


def _parent_outcomes(conn: sqlite3.Connection, job_id: str) -> list[tuple[Any, ...]] | None:
    if conn.execute("SELECT 1 FROM jobrunner_jobs WHERE id = ?", (job_id,)).fetchone() is None:
        return None
    return conn.execute(
        "SELECT parent, parent_name, status, result, error_type, error_message FROM jobrunner_edges "
        "WHERE child = ? ORDER BY position",
        (job_id,),
    ).fetchall()


def _fire_tick(conn: sqlite3.Connection, schedule: str, fire_at: float, row: tuple[Any, ...]) -> bool:
    last = conn.execute("SELECT last_fire_at FROM jobrunner_cron WHERE schedule = ?", (schedule,)).fetchone()
    if last is not None and last[0] >= fire_at:
        return False
    conn.execute(
        "INSERT INTO jobrunner_cron (schedule, last_fire_at) VALUES (?, ?) "
        "ON CONFLICT (schedule) DO UPDATE SET last_fire_at = excluded.last_fire_at",
        (schedule, fire_at),
    )
    _insert_rows(conn, (row,))
    return True


def _try_lead(
    conn: sqlite3.Connection, role: str, holder: str, ttl: float, now: float, take_over: bool
) -> bool:
    """Renew our row, or take it when it lapsed or ``take_over`` (its holder is gone)."""
    conn.execute(
        "INSERT INTO jobrunner_leaders (role, holder, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
        "WHERE jobrunner_leaders.holder = excluded.holder OR jobrunner_leaders.expires_at < ? OR ?",
        (role, holder, now + ttl, now, take_over),
    )
    row = conn.execute("SELECT holder FROM jobrunner_leaders WHERE role = ?", (role,)).fetchone()
    return row is not None and row[0] == holder


def _leader_of(conn: sqlite3.Connection, role: str) -> tuple[str, float] | None:
    return cast(
        "tuple[str, float] | None",
        conn.execute("SELECT holder, expires_at FROM jobrunner_leaders WHERE role = ?", (role,)).fetchone(),
    )


def _prune(conn: sqlite3.Connection, finished_before: float, limit: int) -> int:
    deleted = 0
    for status in (_SUCCEEDED, _CANCELLED):
        if deleted >= limit:
            break
        deleted += _delete_finished(conn, status, finished_before, limit - deleted)
    conn.execute("DELETE FROM jobrunner_workers WHERE seen_at < ?", (finished_before - _KNOWN_NAMES_TTL,))
    # The admission bound made exact again (the leader prunes every minute or so).
    conn.execute(
        "UPDATE jobrunner_admission SET upper = "
        "(SELECT count(*) FROM jobrunner_jobs WHERE due = 1) + (SELECT count(*) FROM jobrunner_jobs WHERE due = 0)"
    )
    return deleted


def _delete_finished(conn: sqlite3.Connection, status: str, finished_before: float, limit: int) -> int:
    return conn.execute(
        "DELETE FROM jobrunner_jobs WHERE seq IN (SELECT seq FROM jobrunner_jobs WHERE status = ? "
        "AND finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
        (status, finished_before, limit),
    ).rowcount


def _stats(conn: sqlite3.Connection, now: float) -> StoreStats:
    counts = dict.fromkeys(JobStatus, 0)
    queues: dict[str, dict[JobStatus, int]] = {}
    # A scheduled job whose time has come counts as queued, as it is for claims.
    rows = conn.execute(
        "SELECT queue, CASE WHEN status = 'scheduled' AND run_at <= ? THEN 'queued' ELSE status END AS s, "
        "count(*) FROM jobrunner_jobs GROUP BY queue, s",
        (now,),
    ).fetchall()
    for queue, status, n in rows:
        by_status = queues.get(queue)
        if by_status is None:
            by_status = queues[queue] = dict.fromkeys(JobStatus, 0)
        by_status[JobStatus(status)] += n
        counts[JobStatus(status)] += n
    # Waiting jobs are read from the two waiting indexes (due = 1, due = 0), not
    # by "due IS NOT NULL", which no index answers: with a million finished jobs
    # that was a scan of the table each, on top of the count above.
    oldest_run_at = min(
        (
            at
            for (at,) in conn.execute(
                "SELECT min(run_at) FROM jobrunner_jobs WHERE due = 1 "
                "UNION ALL SELECT min(run_at) FROM jobrunner_jobs WHERE due = 0 AND run_at <= ?",
                (now,),
            )
            if at is not None and at <= now
        ),
        default=None,
    )
    known: set[str] = set()
    for (names,) in conn.execute(
        "SELECT names FROM jobrunner_workers WHERE seen_at > ?", (now - _KNOWN_NAMES_TTL,)
    ):
        known.update(loads(names))
    unknown: dict[str, float] = {}
    for name, first in conn.execute(
        "SELECT name, min(run_at) FROM jobrunner_jobs WHERE due = 1 GROUP BY name "
        "UNION ALL SELECT name, min(run_at) FROM jobrunner_jobs WHERE due = 0 GROUP BY name"
    ):
        if name not in known:
            unknown[name] = max(unknown.get(name, 0.0), max(0.0, now - first))
    oldest = None if oldest_run_at is None else now - oldest_run_at
    return StoreStats(counts, queues, oldest, unknown)


def _record(row: tuple[Any, ...]) -> JobRecord:
    (
        job_id, name, payload, queue, priority, status, attempts, max_attempts, timeout, key,
        workspace_id, trigger, enqueued_at, run_at, started_at, finished_at, result, error_type,
        error_message, error_traceback, worker, cancel_requested, headers, meta, history, result_error,
        progress,
        expires_at,
    ) = row  # fmt: skip
    try:
        args, kwargs = _decode_payload(payload)
    except (ValueError, TypeError):
        args, kwargs = (), {}  # a damaged row: claims dead-letter it with the reason
    job_status = JobStatus(status)
    entries = [HistoryEntry(enqueued_at, JobStatus.QUEUED, 0, None, "enqueued")]
    if history:
        for line in history.splitlines():
            at, entry_status, attempt, entry_worker, note = loads(line)
            entries.append(HistoryEntry(at, JobStatus(entry_status), attempt, entry_worker, note))
    # Claims and successes are not logged as they happen: add the current ones.
    if job_status is JobStatus.RUNNING or job_status is JobStatus.SUCCEEDED:
        entries.append(HistoryEntry(started_at, JobStatus.RUNNING, attempts, worker))
    if job_status is JobStatus.SUCCEEDED:
        entries.append(HistoryEntry(finished_at, job_status, attempts, worker))
    return JobRecord(
        id=job_id,
        name=name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        status=job_status,
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
        result=None if result is None else loads(result),
        error=None
        if error_type is None
        else ErrorInfo(error_type, error_message or "", error_traceback or ""),
        worker=worker,
        cancel_requested=bool(cancel_requested),
        headers=None if headers is None else loads(headers),
        meta=None if meta is None else loads(meta),
        history=tuple(entries),
        result_error=result_error,
        progress=None if progress is None else Progress(*loads(progress)),
        expires_at=expires_at,
    )


def _migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the file lacks; return the schema version it had."""
    conn.execute(_MIGRATIONS_TABLE)
    found = conn.execute("SELECT coalesce(max(version), 0) FROM jobrunner_migrations").fetchone()[0]
    if found > len(MIGRATIONS):
        raise _NewerSchema(found)
    for version, (name, statements) in enumerate(MIGRATIONS[found:], start=found + 1):
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO jobrunner_migrations (version, name) VALUES (?, ?)", (version, name))
    return cast(int, found)


class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        self.version = version


def _hint(exc: sqlite3.Error, path: str) -> str:
    """What to do about an SQLite error, by its primary result code."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    directory = os.path.dirname(os.path.abspath(path))
    return {
        sqlite3.SQLITE_FULL: "the disk (or the file system's quota) is full; free some space",
        sqlite3.SQLITE_READONLY: (
            f"the file or its directory {directory} is read-only for this process; SQLite needs to "
            f"write the file and create {os.path.basename(path)}-wal and -shm next to it"
        ),
        sqlite3.SQLITE_CANTOPEN: f"check that {directory} exists and this process may write there",
        sqlite3.SQLITE_NOTADB: "point the store at an SQLite database, or at a path where none exists yet",
        sqlite3.SQLITE_CORRUPT: (
            f"the database file is damaged: stop every process using it, then restore it from a "
            f"backup, or salvage what is readable with: sqlite3 {path} .recover | sqlite3 NEW.db"
        ),
        sqlite3.SQLITE_IOERR: "the operating system reported an I/O error; check the disk",
        sqlite3.SQLITE_PERM: "permission denied; check the file's owner and mode",
    }.get(code, "see the cause above")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# --------------------------------------------------------------------------------------
# leadership: a lock file held by the leader, so a dead leader is replaced at once
# --------------------------------------------------------------------------------------

_ROLE_IN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def leader_lock_path(db: str, role: str) -> str:
    """The lock file of ``role``'s leader, next to the database: ``<db>-leader-<role>``."""
    if not _ROLE_IN_NAME.fullmatch(role):
        role = hashlib.sha256(role.encode()).hexdigest()[:16]
    return f"{db}-leader-{role}"


class _LeaderLocks:
    """Exclusive ``flock`` locks on the roles' lock files, one open file per (role, holder).

    The kernel drops a flock lock when the last descriptor of its open file is
    closed, which the death of the process does however it dies (SIGKILL
    included): a lock that can be taken means its last holder is gone (or
    resigned). Locks belong to an open file, not to a process, so two holders
    in one process (two runners, or two holders on one store) each open their
    own and contend as two processes would.

    The descriptors are not inherited by programs started with exec, and a
    child forked from this process closes its copies at once (``_forget``): a
    job's forked helper must not keep a dead leader's lock alive.

    The file is never deleted (another process may hold it open this very
    moment, and a new file would be a second lock); like ``-wal`` and ``-shm``
    it lives next to the database, with the database file's permissions, so
    every user who may write the database may take the lock.
    """

    def __init__(self, db: str) -> None:
        self._db = db
        self._held: dict[tuple[str, str], int] = {}
        self._warned = False
        _ALL_LEADER_LOCKS.add(self)

    def holds(self, role: str, holder: str) -> bool:
        """Whether ``holder`` holds ``role``'s lock through this store."""
        return (role, holder) in self._held

    def acquire(self, role: str, holder: str) -> bool | None:
        """True: taken now; False: a live holder has it; None: no lock can be used here."""
        if not _HAVE_FLOCK:
            return None
        path = leader_lock_path(self._db, role)
        try:
            fd = _open_lock_file(path, self._db)
        except OSError as exc:
            self._warn(path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            self._warn(path, exc)
            return None
        self._held[(role, holder)] = fd
        return True

    def release(self, role: str, holder: str) -> None:
        """Drop the lock, if held (closing its only descriptor drops it)."""
        fd = self._held.pop((role, holder), None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for role, holder in list(self._held):
            self.release(role, holder)

    def _forget(self) -> None:
        """In a forked child: close the copies; the parent's locks stay the parent's."""
        for fd in self._held.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._held.clear()

    def _warn(self, path: str, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            _log.warning(
                "leader lock file unusable; a dead leader is replaced only once its lease lapses",
                path=path,
                error=f"{type(exc).__name__}: {exc}",
                hint="let this process create and read the file, as it does the database's -wal and -shm",
            )


def _open_lock_file(path: str, db: str) -> int:
    """Open ``path`` read-only (flock needs no more), creating it with ``db``'s permissions."""
    try:
        mode = os.stat(db).st_mode & 0o666
    except OSError:
        mode = 0o644
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, os.O_RDONLY)
    try:
        os.fchmod(fd, mode)  # whatever the umask, as SQLite does for -wal and -shm
    except OSError:
        pass
    return fd


# Forking is process-wide, so the stores to fix up in a child are too.
_ALL_LEADER_LOCKS: weakref.WeakSet[_LeaderLocks] = weakref.WeakSet()


def _forget_leader_locks_in_child() -> None:
    for locks in list(_ALL_LEADER_LOCKS):
        locks._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_leader_locks_in_child)


# --------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------


class SQLiteStore:
    """Jobs in an SQLite file: durable, and shared by the runners of one host.

    ``Runner(store="sqlite:///var/jobs.db")`` or ``Runner(store=SQLiteStore("var/jobs.db"))``.

    Durability and delivery (WAL journal, ``synchronous=FULL`` by default):

    * A job whose ``enqueue`` returned is committed: written to the WAL and
      fsynced before the call returns. It survives the process being killed
      (SIGKILL), an operating-system crash and a power loss, on storage that
      honours fsync. Every later change (claim, outcome, heartbeat, rescue) is
      committed the same way, one transaction per batch.
    * Every accepted job reaches an end state (SUCCEEDED, DEAD or CANCELLED):
      delivery is at least once. A job running in a process that dies keeps
      its lease until it expires (the job's timeout plus 30 s by default); the
      leader then retries it as a new attempt (trigger "retry"), or
      dead-letters it if that was its last attempt. Its side effects may
      therefore happen twice; handlers should be idempotent.
    * With ``synchronous="NORMAL"`` commits are not fsynced (the WAL is synced
      at checkpoints): a killed process still loses nothing, but an OS crash
      or power loss may undo the last transactions before the crash, enqueues
      that had returned included (settles undone mean jobs run again). The
      file stays consistent either way. NORMAL costs about a tenth of FULL per
      commit; with batching the difference is small (see the benchmark).
    * Not covered: network file systems (WAL needs shared memory on one host;
      put the file on a local disk), storage that ignores fsync, and deleting
      the ``-wal`` file of a database in use.

    Several processes may share the file: one writer connection per store,
    ``BEGIN IMMEDIATE`` transactions, SQLite's busy timeout, and retries with
    backoff, so "database is locked" never reaches the caller (a lock held for
    longer than ``busy_timeout`` seconds becomes a ``StoreError``). Claims are
    atomic, so a job never runs twice while its lease lives; a second
    connection serves reads (``get``, ``stats``...) so they never wait behind
    writes.

    Leadership (``try_lead``) is a row with a lease plus an exclusive ``flock``
    on ``<path>-leader-<role>`` held by the leader. A follower that can take
    that lock knows the leader's process died (or resigned) and takes over at
    once; followers try every ``leader_poll_interval`` seconds. A leader that is
    alive keeps the role while it renews its lease, however slow; one that
    stops renewing (a hung process) loses it when the lease lapses, as on
    PostgreSQL. Without ``flock`` (Windows), or if the lock file cannot be
    created or opened (a warning says so), the lease alone decides.

    Arguments, results, headers and meta are stored as JSON (``jobrunner.payload``),
    never pickled: a durable store must not execute what it reads. The runner
    refuses what JSON cannot hold before a store sees it; what is stored reads
    back exactly (tuples as lists). ``result_error`` is only read, for rows an
    older release wrote when a result could not be stored.

    ``enqueue(..., max_pending=n)`` checks and inserts in one write transaction;
    writers are serialized (``BEGIN IMMEDIATE``), so producers in every process
    of the host together stay within the bound. The check reads an upper bound
    of the waiting jobs and counts them only when the queue may be full.
    An ``enqueue`` cancelled while it waits for the writer writes nothing; one
    cancelled once its transaction started waits for it to commit (or fail),
    then raises CancelledError, and its jobs exist if it committed.

    Args:
        path: the database file; created, with its schema, on first use.
        synchronous: ``"FULL"`` (default, durable against power loss) or ``"NORMAL"``.
        poll_interval: seconds between looks for jobs enqueued or finished by
            other processes (this process's own are seen at once).
        busy_timeout: seconds to keep retrying while another process holds the
            write lock before raising StoreError.
    """

    durable = True
    serializes_payloads = True
    claim_batch = 256

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        poll_interval: float = 0.5,
        busy_timeout: float = 30.0,
    ) -> None:
        path = os.fspath(path)
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ValueError(
                f"SQLiteStore({path!r}): give the path of a file; for jobs that live in memory use MemoryStore()"
            )
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"SQLiteStore(synchronous={synchronous!r}): use 'FULL' or 'NORMAL'")
        if not poll_interval > 0:
            raise ValueError(f"SQLiteStore(poll_interval={poll_interval!r}): must be seconds > 0")
        if not busy_timeout >= 0:
            raise ValueError(f"SQLiteStore(busy_timeout={busy_timeout!r}): must be seconds >= 0")
        self.path = path
        self.synchronous = synchronous
        self.poll_interval: float | None = poll_interval
        self.busy_timeout = busy_timeout
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._listeners: list[Callable[[], None]] = []
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._seen: dict[str, tuple[frozenset[str] | None, float]] = {}
        self._limited = False  # a claim with global limits was made here
        self._rate_wake: float | None = None  # when the last claim's spent rate window ends
        self._leader_locks = _LeaderLocks(path)
        # Taking the lock file is a system call: followers may look often.
        self.leader_poll_interval: float | None = defaults.LEADER_POLL if _HAVE_FLOCK else None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

        Options may follow as a query: ``?synchronous=NORMAL&poll_interval=0.2&busy_timeout=10``.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc or not parts.path.startswith("/"):
            raise ValueError(
                f"store={url!r}: an SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        path = urllib.parse.unquote(parts.path[1:])
        if not path:
            raise ValueError(f"store={url!r}: the URL names no file; use sqlite:///path/to/jobs.db")
        options: dict[str, Any] = {}
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
            if name == "synchronous":
                options[name] = value.upper()
            elif name in ("poll_interval", "busy_timeout"):
                try:
                    options[name] = float(value)
                except ValueError:
                    raise ValueError(f"store={url!r}: {name}={value!r} is not a number of seconds") from None
            else:
                raise ValueError(
                    f"store={url!r}: unknown option {name!r}; use synchronous, poll_interval or busy_timeout"
                )
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Open the file (creating it and its schema, or migrating an older one)."""
        if self._writer is not None:
            return
        writer = await self._connect()
        try:
            await self._retrying(writer.write, "open", _migrate)
            reader = await self._connect(query_only=True)
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader

    async def _connect(self, *, query_only: bool = False) -> Connection:
        path, synchronous = self.path, self.synchronous

        def connect() -> sqlite3.Connection:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise StoreError(
                    f"cannot open the SQLite store {path}: the directory {directory} does not exist; "
                    f"create it or choose another path"
                )
            # The busy timeout of one attempt; _write retries beyond it.
            conn = sqlite3.connect(path, timeout=min(5.0, self.busy_timeout), isolation_level=None)
            try:
                if sqlite3.sqlite_version_info < _MIN_SQLITE:
                    raise StoreError(
                        f"the SQLite library is {sqlite3.sqlite_version}; the SQLite store needs "
                        f"{'.'.join(map(str, _MIN_SQLITE))} or newer (use a newer Python build)"
                    )
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                conn.execute("PRAGMA temp_store = MEMORY")
                conn.execute("PRAGMA cache_size = -16000")  # 16 MB: the hot index pages stay cached
                # Reading the schema fails here, at open, on a file that is not a database.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                if query_only:
                    conn.execute("PRAGMA query_only = 1")
                else:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        raise StoreError(
                            f"cannot open the SQLite store {path}: SQLite could not switch it to WAL mode "
                            f"(journal_mode={mode}); put the file on a local disk, not a network file system"
                        )
            except BaseException:
                conn.close()
                raise
            return conn

        # Opening may meet another process switching the file to WAL or
        # recovering it, where SQLite answers "locked" without waiting on the
        # busy timeout: retried with backoff, like every other call.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.busy_timeout
        delay = 0.005
        while True:
            conn = Connection(connect, f"jobrunner-sqlite-{'reader' if query_only else 'writer'}")
            try:
                await conn.start()
            except sqlite3.Error as exc:
                await conn.close()
                if not _is_busy(exc) or loop.time() >= give_up:
                    raise self._store_error("open", exc) from exc
            except BaseException:
                await conn.close()
                raise
            else:
                return conn
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def close(self) -> None:
        """Close both connections. Idempotent; ``open()`` reopens."""
        # Like the process's death: a follower takes leadership over at once.
        self._leader_locks.release_all()
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for conn in (reader, writer):
            if conn is not None:
                await conn.close()

    def add_work_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when this process makes work ready; others' work is polled."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()

    def _finished(self, job_ids: Iterable[str]) -> None:
        """Wake this process's ``wait_done`` callers of jobs that became final."""
        waiters = self._waiters
        for job_id in job_ids:
            for waiter in waiters.pop(job_id, ()):
                if not waiter.done():
                    waiter.set_result(None)

    # running transactions ------------------------------------------------------
    def _store_error(self, doing: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"SQLite store {self.path}: {doing} failed: {exc}; {_hint(exc, self.path)}")

    async def _write(self, doing: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in a write transaction on the writer connection."""
        writer = self._writer
        if writer is None:
            raise self._not_open()
        return await self._retrying(writer.write, doing, fn, *args)

    async def _read(self, doing: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the read connection, after this process's writes issued before it."""
        reader = self._reader
        if reader is None:
            raise self._not_open()
        last_write = self._writer.last if self._writer is not None else None
        if (
            last_write is not None
            and not last_write.done()
            and last_write.get_loop() is asyncio.get_running_loop()
        ):
            # Read what this process wrote before asking, even if the writer
            # stopped waiting (was cancelled) while its transaction ran.
            await asyncio.wait((last_write,))
        return await self._retrying(reader.run, doing, fn, *args)

    def _not_open(self) -> StoreError:
        return StoreError(f"SQLite store {self.path} is not open; call open() (a Runner does) first")

    async def _retrying(
        self, call: Callable[..., Awaitable[T]], doing: str, fn: Callable[..., T], *args: Any
    ) -> T:
        """``call(fn, *args)``, retried with backoff while the database is busy
        (another process holds the write lock, or is recovering the WAL)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return await call(fn, *args)
            except _NewerSchema as newer:
                raise StoreError(
                    f"SQLite store {self.path}: the file has schema version {newer.version}, written by a newer "
                    f"jobrunner; this one knows versions up to {len(MIGRATIONS)}. Upgrade jobrunner to open it."
                ) from None
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise self._store_error(doing, exc) from exc
                if loop.time() >= give_up:
                    raise StoreError(
                        f"SQLite store {self.path}: {doing} failed: another process held the database locked for "
                        f"more than {self.busy_timeout} s; find the process holding a long transaction, or raise "
                        f"busy_timeout"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # producing -------------------------------------------------------------
    async def enqueue(
        self,
        jobs: Sequence[JobSpec],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """Insert jobs in one transaction (see ``Store.enqueue``).

        Cancelled while it waits for the writer: nothing is written. Cancelled once
        its transaction has started: it waits for the commit (or failure), then
        raises CancelledError; the jobs exist if it committed.
        """
        if connection is not None:
            raise ValueError("the SQLite store joins no outside transaction; enqueue without connection=")
        rows = [_encode_spec(spec, now) for spec in jobs]
        out = await self._write("enqueue", _insert_rows, rows, max_pending)
        self._notify()
        return out

    async def count_pending(self) -> int:
        """Waiting jobs, counted from the two waiting indexes."""
        return await self._read(
            "count pending jobs",
            lambda conn: conn.execute(
                "SELECT (SELECT count(*) FROM jobrunner_jobs WHERE due = 1) "
                "+ (SELECT count(*) FROM jobrunner_jobs WHERE due = 0)"
            ).fetchone()[0],
        )

    # consuming -------------------------------------------------------------
    async def claim(self, request: ClaimRequest) -> list[ClaimedJob]:
        """Claim the best ready jobs of the requested names, within queue room."""
        names = request.names
        worker = request.worker
        seen = self._seen.get(worker)
        record_seen = None
        if seen is None or seen[0] != names or not 0 <= request.now - seen[1] < _WORKER_REFRESH:
            listed = sorted(names) if names is not None else []
            record_seen = (worker, dumps(listed), request.now)
            self._seen[worker] = (names, request.now)
        if request.limits:
            self._limited = True
        claimed, expired, wake_at = await self._write("claim", _claim, request, names, record_seen)
        if request.limits and request.limits.rates:
            self._rate_wake = wake_at
        if expired:
            self._finished(job.id for job in expired)
            if request.on_expired is not None:
                request.on_expired(expired)
        return claimed

    async def extend_leases(
        self, leases: Sequence[tuple[str, int]], now: float, terms: LeaseTerms
    ) -> LeaseReport:
        """Renew held leases; report the lost ones and cancellations asked for."""
        return await self._write("extend leases", _extend, leases, now, terms, list(self._seen))

    async def settle(self, outcomes: Sequence[Outcome], worker: str) -> list[str]:
        """Record outcomes in one transaction, fenced by lease token; return the fenced-out ids."""
        results = [
            _encode_result(outcome) if outcome.kind is OutcomeKind.SUCCEEDED else None for outcome in outcomes
        ]
        lost, final, ready = await self._write("record outcomes", _settle, outcomes, results)
        if final and self._waiters:
            self._finished(final)
        if ready or self._limited:
            # With global limits, a job ending frees room for this process's runners.
            self._notify()
        return lost

    async def next_run_at(self, now: float) -> float | None:
        """The earliest ``run_at`` after ``now`` of jobs not yet due (from the delayed index),
        or the end of a rate window that held jobs back at this process's last claim."""
        next_at: float | None = await self._read(
            "find the next delayed job",
            lambda conn: conn.execute(
                "SELECT min(run_at) FROM jobrunner_jobs WHERE due = 0 AND run_at > ?", (now,)
            ).fetchone()[0],
        )
        rate_wake = self._rate_wake
        if rate_wake is not None and rate_wake > now:
            return rate_wake if next_at is None else min(next_at, rate_wake)
        return next_at

    # maintenance -------------------------------------------------------------
    async def rescue_expired(self, now: float) -> list[RescuedJob]:
        """Retry, dead-letter or cancel running jobs whose lease ran out."""
        rescued, children = await self._write("rescue expired leases", _rescue, now)
        if rescued:
            self._finished(job.id for job in rescued if job.status is not JobStatus.RETRYING)
            self._finished(children)
            self._notify()
        return rescued

    async def prune(self, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` SUCCEEDED or CANCELLED jobs finished before the time."""
        return await self._write("prune finished jobs", _prune, finished_before, limit)

    async def purge(self, status: JobStatus, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` jobs of a final status finished before the time."""
        if status.value not in _FINAL:
            raise ValueError(f"purge(status={status}): only final statuses can be purged")
        return await self._write("purge jobs", _delete_finished, status.value, finished_before, limit)

    async def try_lead(self, role: str, holder: str, ttl: float, now: float) -> bool:
        """Acquire or renew ``role``: at once if its lock file is free (the last
        leader's process is gone), else only once the leader's lease lapsed."""
        locks = self._leader_locks
        taken = None if locks.holds(role, holder) else locks.acquire(role, holder)
        if taken is False:
            # A live process holds the lock: only our own row or a lapsed lease
            # (a hung leader) lets us lead, and a read tells without the write lock.
            row = await self._read("elect a leader", _leader_of, role)
            if row is not None and row[0] != holder and row[1] >= now:
                return False
        try:
            leading = await self._write("elect a leader", _try_lead, role, holder, ttl, now, taken is True)
        except BaseException:
            # We cannot tell whether we lead: let a live follower take over.
            locks.release(role, holder)
            raise
        if not leading:
            # Our lease lapsed and another runner took over: hand it the lock too.
            locks.release(role, holder)
        return leading

    async def resign(self, role: str, holder: str) -> None:
        """Drop leadership held by ``holder``, and its lock file."""
        try:
            await self._write(
                "resign leadership",
                lambda conn: conn.execute(
                    "DELETE FROM jobrunner_leaders WHERE role = ? AND holder = ?", (role, holder)
                ),
            )
        finally:
            self._leader_locks.release(role, holder)

    # cron -------------------------------------------------------------------------
    async def fire_tick(self, schedule: str, fire_at: float, job: JobSpec, now: float) -> bool:
        """Record the tick and insert its job in one transaction, unless it already fired."""
        row = _encode_spec(job, now)
        fired = await self._write("fire a cron tick", _fire_tick, schedule, fire_at, row)
        if fired:
            self._notify()
        return fired

    async def cron_state(self) -> dict[str, float]:
        """Last tick per schedule."""
        rows = await self._read(
            "read cron ticks",
            lambda conn: conn.execute("SELECT schedule, last_fire_at FROM jobrunner_cron").fetchall(),
        )
        return dict(rows)

    # inspection and repair -----------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None."""
        row = await self._read(
            "read a job",
            lambda conn: conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM jobrunner_jobs WHERE id = ?", (job_id,)
            ).fetchone(),
        )
        return None if row is None else _record(row)

    async def wait_done(self, job_id: str) -> JobRecord:
        """Wait until the job is final: at once for this process's settles, by polling for others'."""
        loop = asyncio.get_running_loop()
        while True:
            # Listen before looking, so a settle between the two is not missed.
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, []).append(waiter)
            try:
                record = await self.get(job_id)
                if record is None:
                    raise JobNotFound(job_id)
                if record.status.is_final:
                    return record
                await asyncio.wait((waiter,), timeout=self.poll_interval)
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[job_id]

    async def cancel(self, job_id: str, now: float) -> JobStatus:
        """Cancel a waiting job, or flag a running one (its runner hears at its next heartbeat)."""
        done = await self._write("cancel a job", _cancel, job_id, now)
        if done is None:
            raise JobNotFound(job_id)
        status, children = done
        if status == _CANCELLED:
            self._finished((job_id, *children))
            if children:
                self._notify()  # a dependent with policy RUN may have become ready
        return JobStatus(status)

    async def requeue(self, job_id: str, now: float) -> JobRecord:
        """DEAD or CANCELLED back to QUEUED, attempts reset."""
        row = await self._write("requeue a job", _requeue, job_id, now)
        if row is None:
            raise JobNotFound(job_id)
        self._notify()
        return _record(row)

    # dependencies (after=) ----------------------------------------------------------
    async def enqueue_after(
        self,
        jobs: Sequence[JobSpec],
        after: Sequence[Dependency],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """Insert jobs and their edges in one transaction (see ``Store.enqueue_after``).

        The transaction reads each parent's status and flags it, serialized with
        every settle (one writer at a time, across processes): a parent ends
        either before, and is counted as ended, or after, and tells the child.
        """
        if connection is not None:
            raise ValueError("the SQLite store joins no outside transaction; enqueue without connection=")
        if len(after) != len(jobs):
            raise ValueError(f"enqueue_after: {len(jobs)} jobs but {len(after)} dependencies")
        out, ended = await self._write("enqueue after parents", _enqueue_after, jobs, after, now, max_pending)
        self._finished(ended)
        self._notify()
        return out

    async def parent_outcomes(self, job_id: str) -> list[ParentOutcome]:
        """As copied into the job's edges when each parent ended."""
        rows = await self._read("read parent outcomes", _parent_outcomes, job_id)
        if rows is None:
            raise JobNotFound(job_id)
        return [parent_outcome(row) for row in rows]

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[JobRecord]:
        """Newest first; ``before``: older than that job (keyset paging by ``seq``)."""
        where: list[str] = []
        params: list[Any] = []
        unsuccessful = status is not None and status.value in _UNSUCCESSFUL
        for column, value in (
            ("u.status" if unsuccessful else "j.status", None if status is None else status.value),
            ("j.queue", queue),
            ("j.name", name),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        order = "u.seq" if unsuccessful else "j.seq"
        if before is not None:
            where.append(f"{order} < ?")
            params.append(None)  # the cursor's seq, read in the same transaction
        sql = f"SELECT {_RECORD_COLUMNS_OF_J} FROM jobrunner_jobs j"
        if unsuccessful:
            # Few among many: walked newest first in their own table (schema step 8).
            sql = f"SELECT {_RECORD_COLUMNS_OF_J} FROM jobrunner_unsuccessful u JOIN jobrunner_jobs j ON j.seq = u.seq"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} DESC LIMIT ?"
        params.append(limit)

        def read(conn: sqlite3.Connection) -> list[Any] | None:
            if before is not None:
                found = conn.execute("SELECT seq FROM jobrunner_jobs WHERE id = ?", (before,)).fetchone()
                if found is None:
                    return None
                params[-2] = found[0]
            return conn.execute(sql, params).fetchall()

        rows = await self._read("list jobs", read)
        if rows is None:
            raise JobNotFound(str(before))
        return [_record(row) for row in rows]

    async def stats(self, now: float) -> StoreStats:
        """Counts by status and queue, oldest wait, and names no live runner registered.

        One pass over the table on the read connection: it never holds up claims.
        """
        return await self._read("compute stats", _stats, now)

    # progress and the cluster view ---------------------------------------------------
    async def set_progress(self, reports: Sequence[ProgressReport]) -> list[str]:
        """Write each running attempt's latest progress in one transaction, fenced by token."""
        rows = [
            (dumps([p.fraction, p.message, p.attempt, p.at]), job_id, token) for job_id, token, p in reports
        ]
        return await self._write("record progress", _set_progress, rows)

    async def workers(self, now: float) -> list[WorkerInfo]:
        """Runners seen in the last few minutes (the workers table), newest first."""
        rows = await self._read(
            "list workers",
            lambda conn: conn.execute(
                "SELECT worker, names, seen_at FROM jobrunner_workers WHERE seen_at > ? ORDER BY seen_at DESC",
                (now - _KNOWN_NAMES_TTL,),
            ).fetchall(),
        )
        return [WorkerInfo(worker, tuple(loads(names)), seen) for worker, names, seen in rows]

    async def leaders(self, now: float) -> list[LeaderInfo]:
        """Every role in the leaders table."""
        rows = await self._read(
            "list leaders",
            lambda conn: conn.execute(
                "SELECT role, holder, expires_at FROM jobrunner_leaders ORDER BY role"
            ).fetchall(),
        )
        return [LeaderInfo(*row) for row in rows]

    # flow control ------------------------------------------------------------------
    async def pause_queue(self, queue: str, now: float) -> bool:
        """Record the pause; every claim (in any process) reads it in its transaction."""
        paused: bool = await self._write(
            "pause a queue",
            lambda conn: (
                conn.execute(
                    "INSERT INTO jobrunner_paused (queue, paused_at) VALUES (?, ?) ON CONFLICT (queue) DO NOTHING",
                    (queue, now),
                ).rowcount
                == 1
            ),
        )
        return paused

    async def resume_queue(self, queue: str) -> bool:
        """Delete the pause and wake this process's runners (others poll)."""
        resumed: bool = await self._write(
            "resume a queue",
            lambda conn: conn.execute("DELETE FROM jobrunner_paused WHERE queue = ?", (queue,)).rowcount == 1,
        )
        if resumed:
            self._notify()
        return resumed

    async def paused_queues(self) -> dict[str, float]:
        """Paused queues and when each was paused."""
        rows = await self._read(
            "read paused queues",
            lambda conn: conn.execute("SELECT queue, paused_at FROM jobrunner_paused").fetchall(),
        )
        return dict(rows)
