"""The PostgreSQL store's SQL: its schema, migrations and every statement.

``postgres.py`` runs these; each statement is one round trip. The state
changes they make are ``jobrunner.transitions``' rules, written in SQL (the
settle and the rescue) or applied in Python and written back (cancel, requeue);
``tests/test_store_model.py`` holds them to those rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jobrunner import transitions as rules
from jobrunner.errors import StoreError
from jobrunner.models import ParentFailure

__all__ = ["SCHEMA_VERSION", "Statements", "check_schema", "install_schema", "quote_schema"]

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

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

_MIGRATION_3 = f"""
-- Payloads as json, not jsonb: jsonb normalizes numbers (1e20 reads back as
-- an int, -0.0 as 0) and refuses \\u0000, while json keeps the text as written,
-- so values read back exactly as jobrunner.payload wrote them, as on the other
-- stores. Existing rows convert as their jsonb text, which is what they read
-- back as before.
--
-- Cost: changing a column's type rewrites the table and rebuilds its indexes
-- under an ACCESS EXCLUSIVE lock, so every runner on this schema waits until
-- the migration commits (measured on a laptop-class server: 0.35 s for 100,000
-- jobs, 1.4 s for 400,000; it grows with the table, finished jobs included).
-- Prune or purge finished jobs first to shorten it, and run it at a quiet
-- moment, e.g. with install_schema() ahead of the deploy.
ALTER TABLE {{s}}.jobs
    ALTER COLUMN args TYPE json USING args::json,
    ALTER COLUMN kwargs TYPE json USING kwargs::json,
    ALTER COLUMN headers TYPE json USING headers::json,
    ALTER COLUMN meta TYPE json USING meta::json,
    ALTER COLUMN result TYPE json USING result::json;

-- Admission under max_pending (see PostgresStore.enqueue), exact but without
-- counting the queue at every enqueue (a count costs a step per waiting job).
--
-- admission.upper is an upper bound of the waiting jobs, changed only under
-- the transaction-level advisory lock that serializes admissions. Every other
-- statement that makes jobs wait (enqueues without the bound or inside a
-- caller's transaction, retries, releases, rescues, requeues) logs how many in
-- admission_log, in its own transaction and without a lock; the next admission
-- folds the log into the bound. Claims, cancels and pruning only lower the
-- true count, so the bound stays one. A batch that fits under the bound is
-- admitted at once; otherwise the waiting jobs are counted (up to what decides)
-- and an exact count replaces the bound. The leader resyncs it now and then
-- (resync_admission, from prune).
CREATE TABLE {{s}}.admission (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    upper bigint NOT NULL
);
INSERT INTO {{s}}.admission (upper) SELECT count(*) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL};
CREATE TABLE {{s}}.admission_log (n bigint NOT NULL);

-- Called from the enqueue statement, before its insert. With p_lock the lock is
-- held until the statement's transaction commits, and the statements below run
-- after it is granted (each statement of a VOLATILE function takes a fresh
-- snapshot), so they see every job admitted before. Without it (a caller's
-- transaction) the count is of what is committed, and the batch is logged.
CREATE FUNCTION {{s}}.admit(
    p_max bigint, p_keys text[], p_already bigint, p_lock boolean,
    OUT o_pending bigint, OUT o_admitted boolean
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_new bigint;
    v_upper bigint;
    v_cap bigint;
BEGIN
    -- The jobs the batch creates: a key held by an active job creates none.
    SELECT count(*) INTO v_new FROM unnest(p_keys) AS k(key)
    WHERE k.key IS NULL OR NOT EXISTS (
        SELECT 1 FROM {{s}}.jobs j WHERE j.key = k.key AND j.status IN {_ACTIVE_SQL});
    IF p_lock THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('jobrunner.admit:' || '{{s}}', 0));
        WITH folded AS (DELETE FROM {{s}}.admission_log RETURNING n)
        SELECT a.upper + (SELECT coalesce(sum(n), 0) FROM folded) INTO v_upper FROM {{s}}.admission a;
        IF v_new = 0 OR v_upper + v_new <= p_max THEN
            UPDATE {{s}}.admission SET upper = v_upper + v_new;
            o_pending := v_upper;
            o_admitted := true;
            RETURN;
        END IF;
    END IF;
    v_cap := greatest(p_max - v_new, p_already) + 1;
    SELECT count(*) INTO o_pending FROM (
        SELECT 1 FROM {{s}}.jobs WHERE status IN {_WAITING_SQL} LIMIT v_cap) AS waiting;
    -- transitions.admits; p_already: jobs this batch inserted in earlier statements.
    o_admitted := v_new = 0 OR o_pending - p_already = 0 OR o_pending + v_new <= p_max;
    IF NOT p_lock THEN
        IF o_admitted AND v_new > 0 THEN
            INSERT INTO {{s}}.admission_log VALUES (v_new);
        END IF;
    ELSIF o_pending < v_cap THEN  -- exact: it replaces the bound
        UPDATE {{s}}.admission SET upper = o_pending + CASE WHEN o_admitted THEN v_new ELSE 0 END;
    ELSE  -- capped, a lower bound: keep the bound (with the log folded in)
        UPDATE {{s}}.admission SET upper = v_upper + CASE WHEN o_admitted THEN v_new ELSE 0 END;
    END IF;
END
$$;

-- The bound made exact again, and the log emptied. The log is emptied first:
-- a job made waiting in between is then both counted and logged, which only
-- overestimates.
CREATE FUNCTION {{s}}.resync_admission() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('jobrunner.admit:' || '{{s}}', 0));
    DELETE FROM {{s}}.admission_log;
    UPDATE {{s}}.admission SET upper = (SELECT count(*) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL});
END
$$;
"""

_MIGRATION_4 = """
-- Job progress, JSON [fraction, message, attempt, at]; written only by set_progress.
ALTER TABLE {s}.jobs ADD COLUMN progress json;
-- Cancelled jobs newest first, as jobs_dead for dead letters: list_jobs pages
-- them by seq. Partial, so claims and successes never touch it.
CREATE INDEX jobs_cancelled ON {s}.jobs (seq) WHERE status = 'cancelled';
-- The newest jobs, for list_jobs without a selective filter: it reads a window
-- of the latest seq values (PostgresStore.list_jobs). A BRIN index (block-range
-- summaries, a few pages for millions of rows): rows are appended in seq order,
-- and keeping it up costs a write a comparison with its range's summary, not a
-- B-tree insert per state change.
CREATE INDEX jobs_seq_brin ON {s}.jobs USING brin (seq) WITH (pages_per_range = 16, autosummarize = on);
"""

_MIGRATION_5 = f"""
-- Flow control (jobrunner.flow). Paused queues: every claim reads this table
-- (empty unless a queue is paused), so a pause holds for every process at once.
CREATE TABLE {{s}}.paused_queues (
    queue text PRIMARY KEY,
    paused_at double precision NOT NULL
);
-- A deadline to start by (expires=/ttl=); a new nullable column is a catalog
-- change only, whatever the table's size.
ALTER TABLE {{s}}.jobs ADD COLUMN expires_at double precision;
-- Waiting jobs with a deadline: a claim probes it for the expired ones, an
-- empty range when no job has one.
CREATE INDEX jobs_expiring ON {{s}}.jobs (expires_at)
    WHERE expires_at IS NOT NULL AND status IN {_WAITING_SQL};
-- Rate limits: one counter per scope (flow.RateLimit.scope) for its current
-- fixed window; read and written only by claims under rate limits, under the
-- advisory lock of the limit.
CREATE TABLE {{s}}.rate_counters (
    scope text PRIMARY KEY,
    window_start double precision NOT NULL,
    used integer NOT NULL
);
"""

_MIGRATION_6 = f"""
-- Dependencies: jobs enqueued after others (enqueue_after). A job waiting for
-- its parents is 'blocked', which no claim reads (the ready index lists waiting
-- statuses only).
ALTER TABLE {{s}}.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE {{s}}.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN {_ACTIVE_SQL[:-1]}, 'succeeded', 'dead', 'cancelled', 'blocked')) NOT VALID;
-- dependents: true once a job enqueued after= waits on this one, so only
-- settles, rescues and cancels of such jobs call tell_children.
-- waiting_on: of a job enqueued after parents, how many have not ended (NULL: none).
ALTER TABLE {{s}}.jobs
    ADD COLUMN dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN waiting_on integer,
    ADD COLUMN on_parent_failure text;
-- One row per (child, parent); the parent's outcome is copied in when it ends,
-- so the child reads it even once the parent is pruned.
CREATE TABLE {{s}}.edges (
    child text NOT NULL,
    position integer NOT NULL,
    parent text NOT NULL,
    parent_name text NOT NULL,
    status text,
    result json,
    error_type text,
    error_message text,
    PRIMARY KEY (child, position)
);
CREATE INDEX edges_parent ON {{s}}.edges (parent);
-- The edges go with their child (prune, purge).
CREATE FUNCTION {{s}}.edges_of_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {{s}}.edges WHERE child = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER edges_of_deleted AFTER DELETE ON {{s}}.jobs
    FOR EACH ROW WHEN (OLD.waiting_on IS NOT NULL) EXECUTE FUNCTION {{s}}.edges_of_deleted();

-- transitions.parent_ended for the children of parents that just ended
-- (p_status: each one's final status, p_result its result as JSON text if it
-- succeeded, p_error_* its error otherwise), and transitively for the children
-- that end with them. The outcomes are passed in, not read: the settle
-- statement calling this cannot see its own update. A child waits on a parent
-- whose row it locked at enqueue (dependents = true), so a parent ending after
-- that reaches it here, and one ending before was counted at its enqueue.
-- Returns how many children became ready (and notifies).
CREATE FUNCTION {{s}}.tell_children(
    p_ids text[], p_status text[], p_result text[], p_error_type text[], p_error_message text[],
    p_now double precision, p_channel text, p_payload text
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_ids text[] := p_ids;
    v_status text[] := p_status;
    v_result text[] := p_result;
    v_error_type text[] := p_error_type;
    v_error_message text[] := p_error_message;
    v_i integer := 1;
    v_edge record;
    v_child record;
    v_new text;
    v_message text;
    v_ready bigint := 0;
BEGIN
    WHILE v_i <= cardinality(v_ids) LOOP
        FOR v_edge IN
            -- In the order the children were enqueued, as every store tells them.
            SELECT e.child, e.position, e.status FROM {{s}}.edges e JOIN {{s}}.jobs j ON j.id = e.child
            WHERE e.parent = v_ids[v_i] ORDER BY j.seq FOR UPDATE OF e
        LOOP
            -- Its latest end (a requeued parent ends again); counted the first time only.
            UPDATE {{s}}.edges SET status = v_status[v_i], result = v_result[v_i]::json,
                error_type = v_error_type[v_i], error_message = v_error_message[v_i]
            WHERE child = v_edge.child AND position = v_edge.position;
            CONTINUE WHEN v_edge.status IS NOT NULL;
            UPDATE {{s}}.jobs SET waiting_on = waiting_on - 1
            WHERE id = v_edge.child AND status = 'blocked'
            RETURNING id, waiting_on, on_parent_failure, run_at, attempts, dependents INTO v_child;
            CONTINUE WHEN NOT FOUND;
            IF v_status[v_i] <> 'succeeded' AND v_child.on_parent_failure <> '{ParentFailure.RUN.value}' THEN
                v_new := CASE WHEN v_child.on_parent_failure = '{ParentFailure.DEAD.value}'
                              THEN 'dead' ELSE 'cancelled' END;
                -- transitions.parent_failed
                v_message := 'parent job ' || v_ids[v_i] || ' ended ' || v_status[v_i]
                    || '; requeue it, and once it succeeded requeue this job';
                UPDATE {{s}}.jobs SET status = v_new, finished_at = p_now,
                    error_type = '{rules.PARENT_FAILED}', error_message = v_message, error_traceback = '',
                    history = history || jsonb_build_array(jsonb_build_array(
                        p_now, v_new, v_child.attempts, NULL, 'parent ' || v_ids[v_i] || ' ' || v_status[v_i]))
                WHERE id = v_child.id;
                IF v_child.dependents THEN
                    v_ids := v_ids || v_child.id;
                    v_status := v_status || v_new;
                    v_result := v_result || NULL::text;
                    v_error_type := v_error_type || '{rules.PARENT_FAILED}'::text;
                    v_error_message := v_error_message || v_message;
                END IF;
            ELSIF v_child.waiting_on = 0 THEN
                v_new := CASE WHEN v_child.run_at > p_now THEN 'scheduled' ELSE 'queued' END;
                UPDATE {{s}}.jobs SET status = v_new,
                    history = history || jsonb_build_array(jsonb_build_array(
                        p_now, v_new, 0, NULL, '{rules.UNBLOCKED_NOTE}'))
                WHERE id = v_child.id;
                v_ready := v_ready + 1;
            END IF;
        END LOOP;
        v_i := v_i + 1;
    END LOOP;
    IF v_ready > 0 THEN
        INSERT INTO {{s}}.admission_log VALUES (v_ready);
        PERFORM pg_notify(p_channel, p_payload);
    END IF;
    RETURN v_ready;
END
$$;
"""

_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "jobs, leaders and cron ticks", _MIGRATION_1),
    (2, "leader session liveness, runners' names, autovacuum for queue churn", _MIGRATION_2),
    (3, "payloads as json (exact round trips); admission under max_pending", _MIGRATION_3),
    (4, "job progress; cancelled jobs newest first (the web dashboard)", _MIGRATION_4),
    (5, "flow control: paused queues, deadlines to start by, rate counters", _MIGRATION_5),
    (6, "dependencies: blocked jobs, edges, tell_children", _MIGRATION_6),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]
"""The schema version this release installs and understands."""


def quote_schema(schema: str) -> str:
    return f'"{schema}"'


def check_schema(schema: str) -> str:
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
    check_schema(schema)
    target = SCHEMA_VERSION if target is None else target
    if not 1 <= target <= SCHEMA_VERSION:
        raise ValueError(f"install_schema(target={target}): versions are 1..{SCHEMA_VERSION}")
    s = quote_schema(schema)
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
    j.meta::text AS meta, j.attempts, j.token, j.seq, j.expires_at"""

# transitions.lapsed in SQL: waiting jobs past their deadline end CANCELLED
# (rows another claim is expiring are skipped; it does them). $1 now.
_EXPIRE_CTES = f"""lapsing AS (
    SELECT id FROM {{s}}.jobs
    WHERE expires_at <= $1 AND expires_at IS NOT NULL AND status IN {_WAITING_SQL}
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
), expired AS (
UPDATE {{s}}.jobs j SET
    status = 'cancelled',
    finished_at = $1,
    lease_expires_at = NULL,
    error_type = '{rules.expiry_error().type}',
    error_message = '{rules.expiry_error().message}',
    error_traceback = '',
    history = j.history || jsonb_build_array(
        jsonb_build_array($1, 'cancelled', j.attempts, NULL, '{rules.EXPIRED_NOTE}'))
FROM lapsing WHERE j.id = lapsing.id
RETURNING j.id, j.name, j.queue, j.expires_at
)"""
# Every expired job of the statement as one JSON array (NULL for none), a column of every row.
_EXPIRED_COLUMN = "(SELECT json_agg(json_build_array(id, name, queue, expires_at))::text FROM expired)"

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
SELECT claimed.*, later.next_at, {_EXPIRED_COLUMN} AS expired
FROM (SELECT min(run_at) AS next_at FROM {{s}}.jobs WHERE status IN {_WAITING_SQL} AND run_at > $1) later
LEFT JOIN claimed ON true
"""


# $1 now, $2 names (NULL: any), $8 queues (NULL: any). Not of a paused queue
# (a hashed subplan over an empty table when none is), not past a deadline.
def _ready(queues: str = "$8") -> str:
    return (
        f"status IN {_WAITING_SQL} AND run_at <= $1 AND ($2::text[] IS NULL OR name = ANY($2::text[])) "
        f"AND ({queues}::text[] IS NULL OR queue = ANY({queues}::text[])) "
        f"AND queue NOT IN (SELECT queue FROM {{s}}.paused_queues) "
        f"AND (expires_at IS NULL OR expires_at > $1)"
    )


_READY = _ready()

# Claim without per-queue limits: the best ``limit`` ready jobs.
_CLAIM = (
    f"""
WITH {_EXPIRE_CTES}, chosen AS (
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
WITH {_EXPIRE_CTES}, room(queue, n) AS (
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

# A claim under global limits (jobrunner.flow) is a transaction of several
# statements: the advisory locks of its limited keys (sorted: no deadlock), so
# limited claims take turns; then, in fresh snapshots, the RUNNING counts, the
# candidates and the update. A settle only lowers the counts, so it needs no lock.
_LIMIT_LOCKS = "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT unnest($1::text[]) AS k ORDER BY 1) keys"
_RUNNING_COUNTS = """
SELECT 'queue', queue, count(*) FROM {s}.jobs WHERE status = 'running' AND queue = ANY($1::text[]) GROUP BY queue
UNION ALL
SELECT 'name', name, count(*) FROM {s}.jobs WHERE status = 'running' AND name = ANY($2::text[]) GROUP BY name
"""
# The expired jobs of a limited claim, first (the same rule as the claim statements').
_EXPIRE = f"WITH {_EXPIRE_CTES} SELECT {_EXPIRED_COLUMN}"
# Candidates ($1 now, $2 names, $3 limit, $4 queues): each queue with a room
# ($5 queues, $6 room) and each limited name ($7 names, $8 room) offers its
# best ``room`` (without jobs of a full name or queue: $9, $10), every other
# job its best ``limit``, none of a spent rate scope (flow.exclusions: $11
# queue, $12 name, $13 workspace; NULL matches any); flow.plan picks among them.
_LIMITED_CANDIDATES = f"""
WITH room(kind, key, n) AS (
    SELECT 'queue', * FROM unnest($5::text[], $6::int[])
    UNION ALL SELECT 'name', * FROM unnest($7::text[], $8::int[])
    UNION ALL SELECT NULL, NULL, $3::int
)
SELECT c.id, c.priority, c.run_at, c.seq, c.queue, c.name, c.workspace_id FROM room CROSS JOIN LATERAL (
    SELECT id, priority, run_at, seq, queue, name, workspace_id FROM {{s}}.jobs
    WHERE {_ready("$4")}
      AND CASE room.kind
            WHEN 'queue' THEN queue = room.key AND name <> ALL($9::text[])
            WHEN 'name' THEN name = room.key AND queue <> ALL($10::text[])
            ELSE queue <> ALL($5::text[]) AND queue <> ALL($10::text[])
                 AND name <> ALL($7::text[]) AND name <> ALL($9::text[]) END
      AND NOT EXISTS (
            SELECT 1 FROM unnest($11::text[], $12::text[], $13::text[]) AS x(q, nm, ws)
            WHERE (x.q IS NULL OR x.q = queue) AND (x.nm IS NULL OR x.nm = name)
              AND (x.ws IS NULL OR x.ws = workspace_id))
    ORDER BY priority, run_at, seq
    LIMIT room.n
    FOR UPDATE SKIP LOCKED
) c
"""
_CLAIM_CHOSEN = f"""
UPDATE {{s}}.jobs j SET
    status = 'running',
    attempts = j.attempts + 1,
    token = j.token + 1,
    started_at = $1,
    worker = $2,
    lease_expires_at = $1 + coalesce($3::float8, coalesce(j.timeout, $4::float8) + $5::float8),
    cancel_requested = false
WHERE j.id = ANY($6::text[]) AND j.status IN {_WAITING_SQL}
RETURNING {_CLAIM_RETURNING}, NULL::float8 AS next_at, NULL::text AS expired
"""

# One statement inserts a batch and notifies listeners (delivered at commit).
# {admit} is empty, or (with max_pending) the admission check: the insert and
# the notification happen only if the batch is admitted.
_ENQUEUE = f"""
WITH {{admit}}ins AS (
    INSERT INTO {{s}}.jobs (id, name, queue, priority, status, max_attempts, timeout, key, workspace_id,
                          trigger, enqueued_at, run_at, args, kwargs, headers, meta, expires_at)
    SELECT u.id, u.name, u.queue, u.priority,
           CASE WHEN u.run_at > $17 THEN 'scheduled' ELSE 'queued' END,
           u.max_attempts, u.timeout, u.key, u.workspace_id, u.trigger, u.enqueued_at, u.run_at,
           u.args::json, u.kwargs::json, u.headers::json, u.meta::json, u.expires_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::float8[], $7::text[],
                $8::text[], $9::text[], $10::float8[], $11::float8[], $12::text[], $13::text[],
                $14::text[], $15::text[], $16::float8[])
         WITH ORDINALITY AS u(id, name, queue, priority, max_attempts, timeout, key, workspace_id,
                              trigger, enqueued_at, run_at, args, kwargs, headers, meta, expires_at, ord)
    {{admitted}}
    ORDER BY u.ord
    ON CONFLICT (key) WHERE key IS NOT NULL AND status IN {_ACTIVE_SQL} DO NOTHING
    RETURNING id
){{logged}}
SELECT array(SELECT id FROM ins), {{outcome}}
"""
# Without the bound the batch is logged for admission (see _MIGRATION_3).
_ENQUEUE_FREE = dict(
    admit="",
    admitted="",
    logged=", logged AS (INSERT INTO {s}.admission_log SELECT count(*) FROM ins HAVING count(*) > 0)",
    outcome="NULL::bigint, true, pg_notify($18, $19)",
)
# $20 max_pending, $21 jobs of this batch already inserted, $22 lock (not inside a caller's transaction).
_ENQUEUE_BOUNDED = dict(
    admit="adm AS (SELECT * FROM {s}.admit($20, $7::text[], $21, $22)), ",
    admitted="WHERE (SELECT o_admitted FROM adm)",
    logged="",
    outcome=(
        "(SELECT o_pending FROM adm), (SELECT o_admitted FROM adm), "
        "(SELECT pg_notify($18, $19) WHERE (SELECT o_admitted FROM adm))"
    ),
)

_ACTIVE_KEYS = f"SELECT key, id FROM {{s}}.jobs WHERE key = ANY($1::text[]) AND status IN {_ACTIVE_SQL}"

# transitions.settled in SQL: the status an outcome leads to. A cancel request
# turns a retry, a dead end or a release into CANCELLED; a released attempt
# goes back to where it waited.
_SETTLED_STATUS = """CASE
        WHEN u.kind = 'succeeded' THEN 'succeeded'
        WHEN u.kind = 'cancelled' OR j.cancel_requested THEN 'cancelled'
        WHEN u.kind = 'retry' THEN 'retrying'
        WHEN u.kind = 'dead' THEN 'dead'
        WHEN j.trigger = 'retry' THEN 'retrying'
        ELSE 'queued' END"""
# The outcome's own effect applies unless a cancel request overrode it.
_AS_ITSELF = "NOT (j.cancel_requested AND u.kind IN ('retry', 'dead', 'released'))"

# Jobs others wait on (dependents) that just ended tell their children, in the
# same statement, in the order the store changed them ({order}: the outcomes'
# order, or lease order for a rescue); {ended} is the CTE of the rows changed, channel and payload
# are $11 and $12 in the settle and $3 and $4 in the rescue. Without such a job,
# HAVING leaves no row and the function is not called.
_TOLD = """, told AS (
    SELECT {{s}}.tell_children(array_agg(id ORDER BY {order}), array_agg(status ORDER BY {order}),
        array_agg(result_text ORDER BY {order}),
        array_agg(CASE WHEN status <> 'succeeded' THEN error_type END ORDER BY {order}),
        array_agg(CASE WHEN status <> 'succeeded' THEN error_message END ORDER BY {order}),
        {at}, {channel}, {payload}) AS ready
    FROM {ended} WHERE dependents AND status IN ('succeeded', 'dead', 'cancelled') HAVING count(*) > 0
)"""

# Outcomes that put a job back in the queue (a retry, a release) notify the
# other processes in the same statement ($11 channel, $12 payload). The
# caller sends each (id, token) once: PostgreSQL updates a row at most once
# per statement, and a second outcome for the same attempt is lost anyway.
_SETTLE = f"""
WITH settled AS (
UPDATE {{s}}.jobs j SET
    status = {_SETTLED_STATUS},
    attempts = CASE WHEN u.kind = 'released' AND {_AS_ITSELF} THEN j.attempts - 1 ELSE j.attempts END,
    run_at = CASE WHEN u.kind = 'retry' AND {_AS_ITSELF} THEN u.retry_at ELSE j.run_at END,
    trigger = CASE WHEN u.kind = 'retry' AND {_AS_ITSELF} THEN 'retry' ELSE j.trigger END,
    finished_at = CASE WHEN u.kind IN {_FINAL_SQL} OR j.cancel_requested THEN u.at END,
    lease_expires_at = NULL,
    result = u.result::json,
    -- RETRY, DEAD and CANCELLED record the outcome's error; SUCCEEDED and RELEASED keep the last.
    error_type = CASE WHEN u.kind IN ('retry', 'dead', 'cancelled') THEN u.error_type ELSE j.error_type END,
    error_message = CASE WHEN u.kind IN ('retry', 'dead', 'cancelled') THEN u.error_message ELSE j.error_message END,
    error_traceback = CASE WHEN u.kind IN ('retry', 'dead', 'cancelled') THEN u.error_traceback ELSE j.error_traceback END,
    -- Claims and successes are implied by started_at and finished_at; the rarer
    -- transitions log the attempt's start and its end.
    history = CASE WHEN u.kind = 'succeeded' THEN j.history ELSE j.history || jsonb_build_array(
        jsonb_build_array(j.started_at, 'running', j.attempts, j.worker, ''),
        jsonb_build_array(u.at, {_SETTLED_STATUS}, j.attempts, j.worker,
            CASE WHEN {_AS_ITSELF} THEN u.note
                 WHEN u.note = '' THEN '{rules.CANCEL_WINS_NOTE}'
                 ELSE '{rules.CANCEL_WINS_NOTE}; ' || u.note END)) END
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::float8[], $5::float8[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[])
     WITH ORDINALITY AS u(id, token, kind, at, retry_at, result, error_type, error_message, error_traceback, note, ord)
WHERE j.id = u.id AND j.token = u.token AND j.status = 'running'
RETURNING j.id, j.token, j.status, j.dependents, u.at, u.ord,
    CASE WHEN j.dependents THEN j.result::text END AS result_text, j.error_type, j.error_message
), logged AS (
    INSERT INTO {{s}}.admission_log
    SELECT count(*) FROM settled WHERE status IN ('queued', 'retrying') HAVING count(*) > 0
){_TOLD.format(ended="settled", order="ord", at="max(at)", channel="$11", payload="$12")}
SELECT id, token, status,
       (SELECT count(pg_notify($11, $12)) FROM (
            SELECT 1 FROM settled WHERE status IN ('queued', 'retrying') LIMIT 1) AS requeued),
       (SELECT ready FROM told)
FROM settled
"""

_EXTEND = """
UPDATE {s}.jobs j SET lease_expires_at = $3 + coalesce($4::float8, coalesce(j.timeout, $5::float8) + $6::float8)
FROM unnest($1::text[], $2::bigint[]) AS u(id, token)
WHERE j.id = u.id AND j.token = u.token AND j.status = 'running'
RETURNING j.id, j.token, j.cancel_requested
"""

_NEXT_RUN_AT = f"SELECT min(run_at) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL} AND run_at > $1"

_COUNT_PENDING = f"SELECT count(*) FROM {{s}}.jobs WHERE status IN {_WAITING_SQL}"

_RESCUE = f"""
WITH expired AS (
    SELECT id, lease_expires_at AS lease,
           CASE WHEN cancel_requested THEN 'cancelled'
                WHEN attempts >= max_attempts THEN 'dead'
                ELSE 'retrying' END AS status
    FROM {{s}}.jobs
    WHERE status = 'running' AND lease_expires_at < $1
    ORDER BY lease_expires_at, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), rescued AS (
UPDATE {{s}}.jobs j SET
    status = e.status,
    finished_at = CASE WHEN e.status = 'retrying' THEN NULL ELSE $1 END,
    -- transitions.rescued: ready at once, for every process: not the rescuer's
    -- now, which may be ahead of the other processes' clocks (the job was due
    -- long before anyway), and it keeps its place.
    run_at = CASE WHEN e.status = 'retrying' THEN least(j.run_at, $1) ELSE j.run_at END,
    trigger = CASE WHEN e.status = 'retrying' THEN 'retry' ELSE j.trigger END,
    lease_expires_at = NULL,
    error_type = 'LeaseExpired',
    -- transitions.lease_expired
    error_message = 'worker ' || coalesce(j.worker, 'None') || ' stopped renewing its lease on attempt '
        || j.attempts || '; the worker probably died',
    error_traceback = '',
    history = j.history || jsonb_build_array(
        jsonb_build_array(j.started_at, 'running', j.attempts, j.worker, ''),
        jsonb_build_array($1, e.status, j.attempts, j.worker, '{rules.LEASE_EXPIRED_NOTE}'))
FROM expired e WHERE j.id = e.id
RETURNING j.id, j.name, j.attempts, j.status, j.dependents, NULL::text AS result_text, j.error_type,
    j.error_message, e.lease, j.seq
), logged AS (
    INSERT INTO {{s}}.admission_log
    SELECT count(*) FROM rescued WHERE status = 'retrying' HAVING count(*) > 0
){_TOLD.format(ended="rescued", order="lease, seq", at="$1", channel="$3", payload="$4")}
SELECT id, name, attempts, status,
       (SELECT count(pg_notify($3, $4)) FROM (
            SELECT 1 FROM rescued WHERE status = 'retrying' LIMIT 1) AS requeued),
       (SELECT ready FROM told)
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

# A job's state as transitions.JobState, locked for a change made in Python
# (cancel, requeue); the result and error columns are left out: those changes
# keep them.
_STATE_FOR_UPDATE = """
SELECT status, attempts, token, trigger, run_at, started_at, finished_at, worker, lease_expires_at,
    cancel_requested, key, dependents, error_type, error_message
FROM {s}.jobs WHERE id = $1 FOR UPDATE
"""
_APPLY = f"""
WITH applied AS (
    UPDATE {{s}}.jobs SET status = $2, attempts = $3, trigger = $4, run_at = $5, started_at = $6,
        finished_at = $7, lease_expires_at = $8, cancel_requested = $9, history = history || $10::jsonb
    WHERE id = $1
    RETURNING status
)
-- A requeue makes the job wait: logged for admission (see _MIGRATION_3).
INSERT INTO {{s}}.admission_log SELECT 1 FROM applied WHERE status IN {_WAITING_SQL}
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
    meta::text, history::text, result_error, progress::text, expires_at"""

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


# enqueue_after: lock the parents (in id order, so two enqueues never wait on
# each other) and flag them; a parent settling meanwhile waits for the commit.
_LOCK_PARENTS = """
SELECT id FROM {s}.jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""
_FLAG_PARENTS = """
UPDATE {s}.jobs SET dependents = true WHERE id = ANY($1::text[])
RETURNING id, name, status, CASE WHEN status = 'succeeded' THEN result::text END,
    CASE WHEN status IN ('dead', 'cancelled') THEN error_type END,
    CASE WHEN status IN ('dead', 'cancelled') THEN error_message END, expires_at
"""
_INSERT_CHILD = """
INSERT INTO {s}.jobs (id, name, queue, priority, max_attempts, timeout, key, workspace_id, trigger,
    enqueued_at, run_at, args, kwargs, headers, meta, expires_at, status, finished_at, error_type,
    error_message, error_traceback, history, waiting_on, on_parent_failure)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::json, $13::json, $14::json, $15::json, $16, $17,
    $18, $19, $20, $21, $22::jsonb, $23, $24)
"""
_INSERT_EDGES = """
INSERT INTO {s}.edges (child, position, parent, parent_name, status, result, error_type, error_message)
SELECT $1, u.ord - 1, u.parent, u.name, u.status, u.result::json, u.error_type, u.error_message
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    WITH ORDINALITY AS u(parent, name, status, result, error_type, error_message, ord)
"""
_PARENT_OUTCOMES = """
SELECT parent, parent_name, status, result::text, error_type, error_message
FROM {s}.edges WHERE child = $1 ORDER BY position
"""
_TELL_CHILDREN = "SELECT {s}.tell_children($1, $2, $3, $4, $5, $6, $7, $8)"


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement, with the schema filled in."""

    claim: str
    claim_with_room: str
    enqueue: str
    enqueue_bounded: str
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
    state_for_update: str
    apply: str
    stats: str
    oldest: str
    unknown: str
    seen_names: str
    forget_runners: str
    key_holder: str
    list_jobs: str
    set_progress: str
    workers: str
    leaders: str
    seq_of: str
    last_seq: str
    resync_admission: str
    statistics_stale: str
    analyze: str
    limit_locks: str
    running_counts: str
    expire: str
    limited_candidates: str
    claim_chosen: str
    pause: str
    resume: str
    paused: str
    rate_counters: str
    spend: str
    lock_parents: str
    flag_parents: str
    insert_child: str
    insert_edges: str
    parent_outcomes: str
    tell_children: str
    admit_batch: str
    log_waiting: str
    job_exists: str

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        s = quote_schema(schema)
        fmt = {"s": s}
        return cls(
            claim=_CLAIM.format(**fmt),
            claim_with_room=_CLAIM_WITH_ROOM.format(**fmt),
            enqueue=_ENQUEUE.format(
                **fmt, **{part: text.format(**fmt) for part, text in _ENQUEUE_FREE.items()}
            ),
            enqueue_bounded=_ENQUEUE.format(
                **fmt, **{part: text.format(**fmt) for part, text in _ENQUEUE_BOUNDED.items()}
            ),
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
            state_for_update=_STATE_FOR_UPDATE.format(**fmt),
            apply=_APPLY.format(**fmt),
            stats=_STATS.format(**fmt),
            oldest=_OLDEST.format(**fmt),
            unknown=_UNKNOWN.format(**fmt),
            seen_names=(
                f"INSERT INTO {s}.runners (worker, names, seen_at) VALUES ($1, $2, $3) "
                f"ON CONFLICT (worker) DO UPDATE SET names = excluded.names, seen_at = excluded.seen_at"
            ),
            forget_runners=f"DELETE FROM {s}.runners WHERE seen_at < $1",
            key_holder=f"SELECT id FROM {s}.jobs WHERE key = $1 AND status IN {_ACTIVE_SQL}",
            resync_admission=f"SELECT {s}.resync_admission()",
            # A tenth of the table (at least 1,000 rows) changed since its last
            # ANALYZE: the planner's picture of how many jobs wait is stale.
            statistics_stale=(
                f"SELECT coalesce(bool_or(n_mod_since_analyze > greatest(1000, (n_live_tup + n_dead_tup) / 10)), "
                f"false) FROM pg_stat_user_tables WHERE relid = '{s}.jobs'::regclass"
            ),
            analyze=f"ANALYZE {s}.jobs",
            lock_parents=_LOCK_PARENTS.format(**fmt),
            flag_parents=_FLAG_PARENTS.format(**fmt),
            insert_child=_INSERT_CHILD.format(**fmt),
            insert_edges=_INSERT_EDGES.format(**fmt),
            parent_outcomes=_PARENT_OUTCOMES.format(**fmt),
            tell_children=_TELL_CHILDREN.format(**fmt),
            admit_batch=f"SELECT * FROM {s}.admit($1, $2::text[], 0, $3)",
            log_waiting=f"INSERT INTO {s}.admission_log VALUES (1)",
            job_exists=f"SELECT 1 FROM {s}.jobs WHERE id = $1",
            limit_locks=_LIMIT_LOCKS,
            running_counts=_RUNNING_COUNTS.format(**fmt),
            expire=_EXPIRE.format(**fmt),
            limited_candidates=_LIMITED_CANDIDATES.format(**fmt),
            claim_chosen=_CLAIM_CHOSEN.format(**fmt),
            pause=(
                f"INSERT INTO {s}.paused_queues (queue, paused_at) VALUES ($1, $2) "
                f"ON CONFLICT (queue) DO NOTHING RETURNING queue"
            ),
            resume=f"DELETE FROM {s}.paused_queues WHERE queue = $1 RETURNING queue",
            paused=f"SELECT queue, paused_at FROM {s}.paused_queues",
            rate_counters=f"SELECT scope, window_start, used FROM {s}.rate_counters",
            spend=(
                f"INSERT INTO {s}.rate_counters (scope, window_start, used) "
                f"SELECT * FROM unnest($1::text[], $2::float8[], $3::int[]) "
                f"ON CONFLICT (scope) DO UPDATE SET window_start = excluded.window_start, used = excluded.used"
            ),
            # The WHERE clause is added per call (PostgresStore.list_jobs): a
            # generic "$1 IS NULL OR status = $1" plan would not use the partial indexes.
            list_jobs=f"SELECT {_RECORD_COLUMNS} FROM {s}.jobs",
            set_progress=(
                f"UPDATE {s}.jobs AS j SET progress = u.progress::json "
                f"FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(id, token, progress) "
                f"WHERE j.id = u.id AND j.token = u.token AND j.status = 'running' RETURNING j.id"
            ),
            workers=f"SELECT worker, names, seen_at FROM {s}.runners WHERE seen_at > $1 ORDER BY seen_at DESC",
            leaders=f"SELECT role, holder, expires_at FROM {s}.leaders ORDER BY role",
            seq_of=f"SELECT seq FROM {s}.jobs WHERE id = $1",
            last_seq=f"SELECT pg_sequence_last_value(pg_get_serial_sequence('{s}.jobs', 'seq')::regclass)",
        )
