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
* Payloads are JSON (``json`` columns, which keep the text as written:
  ``jsonb`` would turn ``1e20`` into an int and ``-0.0`` into ``0`` and refuse
  NUL), never pickle; times are epoch seconds as ``double precision``, always
  the ``now`` the runner passes.
* ``enqueue(..., max_pending=n)``: the check and the insert run in one
  statement under a transaction-level advisory lock, so producers in every
  process stay within the bound together; the check reads an upper bound of
  the waiting jobs and counts them only when the queue may be full (the
  ``admit`` function of migration 3). Inside a caller's transaction
  (``connection=``) no lock is taken (see ``PostgresStore.enqueue``).
* The SQL (schema, migrations, statements) is ``_postgres_sql.py``; the state
  changes follow ``jobrunner.transitions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from jobrunner import defaults, flow
from jobrunner import transitions as rules
from jobrunner.errors import InvalidJobState, JobNotFound, QueueFull, StoreError
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
from jobrunner.stores._postgres_sql import SCHEMA_VERSION, Statements, check_schema, install_schema
from jobrunner.stores.base import parent_outcome, unstorable

__all__ = ["SCHEMA_VERSION", "PostgresStore", "install_schema"]

_log = get_logger("jobrunner.stores.postgres")
_new_tuple = tuple.__new__

# A runner that has not claimed for this long no longer counts as knowing its names.
_KNOWN_NAMES_TTL = 300.0
# Statuses whose partial indexes list them newest first (or that are few).
_INDEXED_FOR_LISTING = frozenset({JobStatus.DEAD, JobStatus.CANCELLED, JobStatus.RUNNING})
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


# --- payloads: jobrunner.payload's codec, as every store -------------------------------------
def _encode_spec(spec: JobSpec) -> tuple[str, str, str | None, str | None]:
    """args, kwargs, headers and meta as JSON (the payload already normalized by the runner)."""
    try:
        args = dumps(spec.args) if spec.args else "[]"
        kwargs = dumps(spec.kwargs) if spec.kwargs else "{}"
        headers = None if spec.headers is None else dumps(spec.headers)
        meta = None if spec.meta is None else dumps(spec.meta)
    except (TypeError, ValueError):
        raise unstorable(spec) from None
    return args, kwargs, headers, meta


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


def _decode_payload(args_text: str, kwargs_text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args_text == "[]":
        args: Any = ()
    else:
        args = loads(args_text)
        if not isinstance(args, list):
            raise ValueError(f"args is a JSON {type(args).__name__}, not an array")
        args = tuple(args)
    if kwargs_text == "{}":
        return args, {}
    kwargs = loads(kwargs_text)
    if not isinstance(kwargs, dict):
        raise ValueError(f"kwargs is a JSON {type(kwargs).__name__}, not an object")
    return args, kwargs


def _loads_mapping(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = loads(text)
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


def _drop(conn: Any) -> None:
    """Abort an asyncpg connection whose event loop is closed or not running."""
    transport = getattr(conn, "_transport", None)
    try:
        conn.terminate()
    except RuntimeError:
        # Its loop is closed: the transport could not schedule its own closing.
        # Run what that loop would have run: the protocol hears the connection
        # is lost and the socket is closed (the server ends the session).
        if transport is not None and getattr(transport, "_sock", None) is not None:
            with contextlib.suppress(Exception):
                transport._call_connection_lost(None)


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
        self.schema = check_schema(schema)
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
        self._sql = Statements.for_schema(schema)
        # pg_notify's channel is a plain string; LISTEN quotes it (asyncpg does).
        self._channel = f"{schema}.work"
        # Our own notifications carry this, so we do not wake ourselves twice.
        self._instance = secrets.token_hex(8)
        # A session advisory lock held by the LISTEN connection: alive while this process is.
        self._session_key = secrets.randbits(62)
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the connections belong to
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
        self._limited = False  # a claim with global limits was made here
        self._rate_wake: float | None = None  # when the last claim's spent rate window ends

    # Store settings a URL may carry in its query; libpq has no parameters by
    # these names, so nothing meant for the server is taken.
    _URL_OPTIONS: dict[str, type] = {
        "schema": str,
        "min_connections": int,
        "max_connections": int,
        "claim_batch": int,
        "poll_interval": float,
    }

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """``postgresql://user@host/db?schema=billing&max_connections=20``.

        ``schema``, ``min_connections``, ``max_connections``, ``claim_batch`` and
        ``poll_interval`` are the store's; the rest of the URL (``sslmode``,
        ``application_name``...) goes to the server as usual.
        """
        parts = urlsplit(url)
        kept: list[tuple[str, str]] = []
        options: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            kind = cls._URL_OPTIONS.get(name)
            if kind is None:
                kept.append((name, value))
                continue
            try:
                options[name] = kind(value)
            except ValueError:
                raise ValueError(
                    f"store={redact_dsn(url)!r}: {name}={value!r} is not a valid {kind.__name__}"
                ) from None
        dsn = urlunsplit(parts._replace(query=urlencode(kept)))
        return cls(dsn, **options)

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
        """Connect, install or migrate the schema, start listening. Idempotent.

        Connections left open on another event loop (a previous ``asyncio.run``
        whose loop is closed now, say) are dropped and new ones made here.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            self._abandon()
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
            self._loop = loop
            self._supervisor = loop.create_task(
                self._supervise(), name=f"jobrunner.postgres.listen[{self.schema}]"
            )

    async def close(self) -> None:
        """Stop listening and close every connection. Idempotent.

        Connections of another event loop (closed, or not the running one) are
        dropped without awaiting anything of that loop.
        """
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._abandon()
            return
        self._loop = None
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

    def _abandon(self) -> None:
        """Drop the connections, tasks and futures of the loop this store was opened on.

        That loop is closed or not running here, so nothing of it can be awaited:
        each connection is aborted at once, and its socket closed directly when
        the loop is closed (asyncpg would ask that loop to do it, and fail).
        """
        conns: list[Any] = [] if self._listen_conn is None else [self._listen_conn]
        if self._pool is not None:
            conns += [holder._con for holder in self._pool._holders if holder._con is not None]
        for conn in conns:
            _drop(conn)
        self._pool = self._listen_conn = self._supervisor = self._loop = None
        self._open_lock = None  # an asyncio.Lock belongs to the loop it first waited on
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
        await conn.fetch(self._sql.settle, *([[]] * 10), self._channel, self._instance)
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
    async def enqueue(
        self,
        jobs: Sequence[JobSpec],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """Insert jobs in one statement (all or none); with ``connection``, inside the
        caller's transaction on that asyncpg connection.

        ``max_pending`` (see ``Store.enqueue``): the check runs in the same
        statement as the insert. Without ``connection`` it holds a transaction-level
        advisory lock from the check to the commit (one statement), so producers
        in any number of processes never exceed the bound together. With
        ``connection`` no lock is taken (it would be held until the caller
        commits, stalling every producer): the waiting jobs are counted as
        committed when the statement runs, plus the caller's own, so jobs in
        transactions not yet committed elsewhere are not counted and the bound
        may be exceeded by at most the jobs those open transactions hold.
        """
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
            return await self._insert(
                connection, jobs, columns, now, notify_payload="", max_pending=max_pending, lock=False
            )
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                out = await self._insert(
                    conn,
                    jobs,
                    columns,
                    now,
                    notify_payload=self._instance,
                    max_pending=max_pending,
                    lock=True,
                )
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
        self,
        conn: Any,
        jobs: Sequence[JobSpec],
        columns: list[list[Any]],
        now: float,
        notify_payload: str,
        max_pending: int | None = None,
        lock: bool = True,
    ) -> list[Enqueued]:
        sql = self._sql.enqueue if max_pending is None else self._sql.enqueue_bounded

        async def insert(subset: list[list[Any]], already: int) -> list[str]:
            extra: tuple[Any, ...] = () if max_pending is None else (max_pending, already, lock)
            created, pending, admitted, _ = await conn.fetchrow(
                sql, *subset, now, self._channel, notify_payload, *extra
            )
            if not admitted:
                assert max_pending is not None
                raise QueueFull(pending, max_pending)
            return list(created)

        keys = columns[6]
        if not any(key is not None for key in keys):
            created = await insert(columns, 0)
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
                already = sum(1 for answer in answers.values() if answer.created)
                created_ids = set(await insert(subset, already))
                missing: list[int] = []
                for i in pending:
                    if jobs[i].id in created_ids:
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
        if request.limits:
            return await self._claim_limited(pool, request, args)
        if request.queue_room:
            limited = list(request.queue_room)
            args += [limited, [max(0, int(request.queue_room[q])) for q in limited]]
            rows = await pool.fetch(self._sql.claim_with_room, *args)
        else:
            rows = await pool.fetch(self._sql.claim, *args)
        next_at, expired = rows[0][19], rows[0][20]
        self._next_run_at = (now, None if next_at is None else float(next_at), self._writes)
        if expired is not None:
            self._expired(request, expired)
        if rows[0][0] is None:
            return []
        if len(rows) > 1:
            rows = sorted(rows, key=_claim_order)
        return [_claimed(row) for row in rows]

    async def _claim_limited(self, pool: Any, request: ClaimRequest, args: list[Any]) -> list[ClaimedJob]:
        """A claim under global limits: one transaction, serialized per limited key
        by advisory locks, that counts RUNNING jobs before it picks (see ``_LIMIT_LOCKS``)."""
        limits = request.limits
        assert limits
        self._limited = True
        self._next_run_at = None  # next_run_at asks the database (this path does not answer it)
        now, worker, limit, queues = args[0], args[3], args[2], args[7]
        async with pool.acquire() as conn, conn.transaction():
            expired = await conn.fetchval(self._sql.expire, now)
            await conn.fetchval(
                self._sql.limit_locks, [f"jobrunner.limit:{self.schema}:{k}" for k in limits.lock_keys()]
            )
            by_queue: dict[str, int] = {}
            by_name: dict[str, int] = {}
            for kind, key, n in await conn.fetch(
                self._sql.running_counts, list(limits.queues), list(limits.names)
            ):
                (by_queue if kind == "queue" else by_name)[key] = n
            queue_room, name_room = flow.room(limits, by_queue, by_name)
            room = dict(request.queue_room)
            for queue, n in queue_room.items():
                room[queue] = min(room.get(queue, n), n)
            counters: dict[str, flow.Window] = {}
            excluded: list[flow.Exclusion] = []
            if limits.rates:
                counters = {
                    row[0]: (float(row[1]), int(row[2])) for row in await conn.fetch(self._sql.rate_counters)
                }
                excluded = flow.exclusions(limits, counters, now)
            open_queues = [q for q, n in room.items() if n > 0]
            open_names = [name for name, n in name_room.items() if n > 0]
            rows = await conn.fetch(
                self._sql.limited_candidates,
                now,
                args[1],
                limit,
                queues,
                open_queues,
                [min(limit, room[q]) for q in open_queues],
                open_names,
                [min(limit, name_room[name]) for name in open_names],
                [name for name, n in name_room.items() if n <= 0],
                [q for q, n in room.items() if n <= 0],
                [x.queue for x in excluded],
                [x.name for x in excluded],
                [x.workspace for x in excluded],
            )
            unique = {row[0]: row for row in rows}
            plan = flow.plan(
                ((r[1], r[2], r[3], r[4], r[5], r[6], r[0]) for r in unique.values()),
                limit,
                limits,
                room,
                name_room,
                counters,
                now,
            )
            chosen = plan.chosen
            if plan.counters:
                spent = list(plan.counters.items())
                await conn.execute(
                    self._sql.spend, [s for s, _ in spent], [c[0] for _, c in spent], [c[1] for _, c in spent]
                )
            if limits.rates:
                wakes = [w for w in (plan.wake_at, flow.spent_wake(limits, counters, now)) if w is not None]
                self._rate_wake = min(wakes) if wakes else None
            claimed = (
                await conn.fetch(self._sql.claim_chosen, now, worker, args[4], args[5], args[6], chosen)
                if chosen
                else []
            )
        if expired is not None:
            self._expired(request, expired)
        return [_claimed(row) for row in sorted(claimed, key=_claim_order)]

    def _expired(self, request: ClaimRequest, expired: str) -> None:
        """Tell of the jobs a claim found past their deadline (a JSON array of rows)."""
        jobs = [ExpiredJob(job_id, name, queue, float(at)) for job_id, name, queue, at in loads(expired)]
        self._wake_waiters(job.id for job in jobs)
        if request.on_expired is not None:
            request.on_expired(jobs)

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
        held = {(row[0], row[1]): row[2] for row in rows}
        lost = tuple(job_id for job_id, token in leases if (job_id, token) not in held)
        cancel = tuple(job_id for job_id, token in leases if held.get((job_id, token)))
        return LeaseReport(lost, cancel)

    async def settle(self, outcomes: Sequence[Outcome], worker: str) -> list[str]:
        """Record a batch of outcomes in one statement, fenced on (id, token, running)."""
        if not outcomes:
            return []
        pool = self._require_pool()
        n = len(outcomes)
        ids: list[str] = []
        tokens: list[int] = []
        kinds: list[str] = []
        ats: list[float] = []
        retry_ats: list[float | None] = [None] * n
        results: list[str | None] = [None] * n
        error_types: list[str | None] = [None] * n
        error_messages: list[str | None] = [None] * n
        error_tracebacks: list[str | None] = [None] * n
        notes: list[str] = [""] * n
        sent: set[tuple[str, int]] = set()
        for outcome in outcomes:
            job_id, token, kind, at, _, error, retry_at = outcome
            if (job_id, token) in sent:
                continue  # a second outcome for the attempt: lost (see below)
            sent.add((job_id, token))
            i = len(ids)
            ids.append(job_id)
            tokens.append(token)
            ats.append(at)
            kinds.append(kind.value)
            if kind is OutcomeKind.SUCCEEDED:
                results[i] = _encode_result(outcome)
                continue
            if kind is OutcomeKind.RELEASED:
                notes[i] = rules.RELEASED_NOTE
                continue
            if kind is OutcomeKind.RETRY:
                retry_ats[i] = at if retry_at is None else retry_at
            if error is not None:
                error_types[i], error_messages[i], error_tracebacks[i] = (
                    error.type,
                    error.message,
                    error.traceback,
                )
                notes[i] = error.type
        m = len(ids)
        rows = await pool.fetch(
            self._sql.settle,
            ids,
            tokens,
            kinds,
            ats,
            retry_ats[:m],
            results[:m],
            error_types[:m],
            error_messages[:m],
            error_tracebacks[:m],
            notes[:m],
            self._channel,
            self._instance,
        )
        applied = {(row[0], row[1]): row[2] for row in rows}
        # Fenced out, or the attempt's second outcome (its pair was popped by the first).
        lost = [o.job_id for o in outcomes if applied.pop((o.job_id, o.token), None) is None]
        statuses = [row[2] for row in rows]
        if self._waiters:
            self._wake_waiters(row[0] for row in rows if row[2] in rules.FINAL)
        if any(status in ("queued", "retrying") for status in statuses):
            self._notify_local()  # the other processes were notified by the statement
        elif self._limited:
            # Jobs ending free room under global limits, here and in other processes.
            await self._announce(pool)
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
        rate_wake = self._rate_wake
        if rate_wake is not None and rate_wake > now:
            # A rate window held jobs back at the last claim: wake when it ends.
            value = await self._require_pool().fetchval(self._sql.next_run_at, now)
            return rate_wake if value is None else min(float(value), rate_wake)
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
        await self._refresh_statistics(pool)
        rescued = [RescuedJob(row[0], row[1], row[2], JobStatus(row[3])) for row in rows]
        if self._waiters:
            self._wake_waiters(r.id for r in rescued if r.status is not JobStatus.RETRYING)
        if any(r.status is JobStatus.RETRYING for r in rescued):
            self._notify_local()  # the other processes were notified by the statement
        return rescued

    async def _refresh_statistics(self, pool: Any) -> None:
        """ANALYZE the jobs table when its planner statistics lag far behind it.

        Without statistics on ``status`` the planner guesses that few rows are
        waiting, and a claim reads and sorts *every* waiting row instead of
        walking the ready index (measured: 40 ms instead of 5 per claim at
        50,000 waiting). Autovacuum fixes it only at its next round (a minute
        apart by default), and a queue's first burst lands before that. The
        leader (this runs with the rescue, every few seconds) looks at the
        table's change counter and analyzes once a tenth of it changed.
        """
        stale = await pool.fetchval(self._sql.statistics_stale)
        if stale:
            await pool.execute(self._sql.analyze)

    async def prune(self, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` SUCCEEDED or CANCELLED jobs finished before the time.

        Also recounts the waiting jobs for admission (the leader prunes every
        minute or so), so its bookkeeping never grows without bound.
        """
        pruned = await self._delete_finished(["succeeded", "cancelled"], finished_before, limit)
        await self._require_pool().execute(self._sql.resync_admission)
        return pruned

    async def purge(self, status: JobStatus, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` jobs of a final ``status`` finished before the time."""
        if status.value not in rules.FINAL:
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
        async with self._require_pool().acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self._sql.state_for_update, job_id)
            if row is None:
                raise JobNotFound(job_id)
            state = _state(row)
            if state.status in rules.FINAL:
                return JobStatus(state.status)  # left as it is
            change = rules.cancelled(state, now)
            await self._apply(conn, job_id, change)
            ready = 0
            if row[11] and change.state.status == rules.CANCELLED:  # others wait on it
                ready = await conn.fetchval(
                    self._sql.tell_children,
                    [job_id],
                    [rules.CANCELLED],
                    [None],
                    [row[12]],
                    [row[13]],
                    now,
                    self._channel,
                    self._instance,
                )
        if change.state.status == rules.CANCELLED:
            self._wake_waiters((job_id,))
        if ready:
            self._notify_local()
        return JobStatus(change.state.status)

    async def requeue(self, job_id: str, now: float) -> JobRecord:
        """Put a DEAD or CANCELLED job back in the queue with attempts reset."""
        pool = self._require_pool()
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self._sql.state_for_update, job_id)
            if row is None:
                raise JobNotFound(job_id)
            state, key = _state(row), row[10]
            holder = None if key is None else await conn.fetchval(self._sql.key_holder, key)
            change = rules.requeued(job_id, state, now, key, holder)
            try:
                await self._apply(conn, job_id, change)
            except asyncpg.UniqueViolationError as exc:  # a job with the key arrived meanwhile
                raise InvalidJobState(
                    job_id, state.status, f"a job with the same key {key!r} is active"
                ) from exc
            record = await conn.fetchrow(self._sql.get, job_id)
        await self._announce(pool)
        return _record(record)

    # dependencies (after=) ------------------------------------------------------------
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

        Each job's parents are locked (``FOR UPDATE``) and flagged before the
        job is inserted: a parent's settle either committed before, and the job
        counts it as ended, or waits for this commit and then tells the job
        (``tell_children``). ``connection``: inside the caller's transaction,
        as ``enqueue``.
        """
        if len(after) != len(jobs):
            raise ValueError(f"enqueue_after: {len(jobs)} jobs but {len(after)} dependencies")
        if connection is not None and not _is_connection(connection):
            raise TypeError(f"enqueue_after(connection={connection!r}): pass an asyncpg connection")
        rules.check_dependencies(jobs, [dependency.parents for dependency in after])
        columns = _columns(jobs)  # raises TypeError before anything is written
        if connection is not None:
            async with connection.transaction():
                return await self._insert_after(connection, jobs, after, columns, now, max_pending, "")
        pool = self._require_pool()
        for attempt in range(5):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    out = await self._insert_after(
                        conn, jobs, after, columns, now, max_pending, self._instance
                    )
                break
            except asyncpg.DeadlockDetectedError:
                # Parents locked while a settle of several of them locks them in
                # another order: nothing was written; try again.
                if attempt == 4:
                    raise
        self._notify_local()
        return out

    async def _insert_after(
        self,
        conn: Any,
        jobs: Sequence[JobSpec],
        after: Sequence[Dependency],
        columns: list[list[Any]],
        now: float,
        max_pending: int | None,
        notify_payload: str,
    ) -> list[Enqueued]:
        if max_pending is not None:
            pending, admitted = await conn.fetchrow(
                self._sql.admit_batch,
                max_pending,
                [None] * len(jobs),
                notify_payload != "",
            )
            if not admitted:
                raise QueueFull(pending, max_pending)
        out: list[Enqueued] = []
        alias: dict[str, str] = {}  # a job of the batch answered by its key's holder -> the holder
        woke = False  # a job with parents went in ready to run
        for i, (spec, dependency) in enumerate(zip(jobs, after, strict=True)):
            row = [column[i] for column in columns]
            if not dependency.parents:
                (answer,) = await self._insert(conn, [spec], [[value] for value in row], now, notify_payload)
                if not answer.created:
                    alias[spec.id] = answer.id
                out.append(answer)
                continue
            parents = list(dict.fromkeys(alias.get(p, p) for p in dependency.parents))
            await conn.fetch(self._sql.lock_parents, parents)
            found = {r[0]: r for r in await conn.fetch(self._sql.flag_parents, parents)}
            for parent_id in parents:
                if parent_id not in found:
                    raise JobNotFound(parent_id)
                if found[parent_id][6] is not None and found[parent_id][2] not in rules.FINAL:
                    raise rules.deadline_parent(parent_id)
            ended = [(p, found[p][2]) for p in parents if found[p][2] in rules.FINAL]
            waiting = len(parents) - len(ended)
            change = rules.after(spec, now, ended, waiting, dependency.on_failure)
            new = change.state
            error = new.error
            await conn.execute(
                self._sql.insert_child,
                *row,
                new.status,
                new.finished_at,
                None if error is None else error.type,
                None if error is None else error.message,
                None if error is None else error.traceback,
                dumps(change.log),
                waiting,
                dependency.on_failure,
            )
            if new.status in rules.WAITING:
                await conn.execute(self._sql.log_waiting)
            edges = [found[p] for p in parents]
            await conn.execute(
                self._sql.insert_edges,
                spec.id,
                parents,
                [e[1] for e in edges],
                [e[2] if e[2] in rules.FINAL else None for e in edges],
                [e[3] for e in edges],
                [e[4] for e in edges],
                [e[5] for e in edges],
            )
            out.append(Enqueued(spec.id, True))
            woke = woke or new.status in rules.WAITING
        if woke:  # delivered at commit, to every process (plain jobs notified by their insert)
            await conn.execute("SELECT pg_notify($1, $2)", self._channel, notify_payload)
        return out

    async def parent_outcomes(self, job_id: str) -> list[ParentOutcome]:
        """As copied into the job's edges when each parent ended."""
        async with self._require_pool().acquire() as conn:
            rows = await conn.fetch(self._sql.parent_outcomes, job_id)
            if not rows and await conn.fetchval(self._sql.job_exists, job_id) is None:
                raise JobNotFound(job_id)
        return [parent_outcome(row) for row in rows]

    async def _apply(self, conn: Any, job_id: str, change: rules.Change) -> None:
        """Write a ``transitions`` change that keeps the result and the error."""
        new = change.state
        await conn.execute(
            self._sql.apply,
            job_id,
            new.status,
            new.attempts,
            new.trigger,
            new.run_at,
            new.started_at,
            new.finished_at,
            new.lease_until,
            new.cancel_requested,
            dumps(change.log),
        )

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[JobRecord]:
        """Jobs matching every given filter, newest (last enqueued) first;
        ``before``: older than that job (keyset paging by ``seq``).

        Dead, cancelled and running jobs are found by their partial indexes.
        Otherwise the newest jobs are read from a window of the latest ``seq``
        values (the BRIN index finds its pages), widened tenfold until it holds
        a page of matches or covers the table: the answer is the same as a sort
        of every match, at the cost of the window instead of the table.
        """
        pool = self._require_pool()
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", None if status is None else status.value),
            ("queue", queue),
            ("name", name),
        ):
            if value is not None:
                params.append(value)
                where.append(f"{column} = ${len(params)}")
        top: int | None = None
        if before is not None:
            top = await pool.fetchval(self._sql.seq_of, before)
            if top is None:
                raise JobNotFound(before)
            where.append(f"seq < {int(top)}")
        params.append(limit)
        select = self._sql.list_jobs
        order = f" ORDER BY seq DESC LIMIT ${len(params)}"
        if status in _INDEXED_FOR_LISTING:
            rows = await pool.fetch(f"{select} WHERE {' AND '.join(where)}{order}", *params)
            return [_record(row) for row in rows]
        if top is None:
            top = (await pool.fetchval(self._sql.last_seq) or 0) + 1
        span = max(1_000, 20 * limit)
        while True:
            # The cut is a literal: a generic plan for "seq > $n" would scan the table.
            cut = top - span
            window = [*where, f"seq > {int(cut)}"] if cut > 0 else where
            sql = select + (f" WHERE {' AND '.join(window)}" if window else "") + order
            rows = await pool.fetch(sql, *params)
            if len(rows) >= limit or cut <= 0:
                return [_record(row) for row in rows]
            span *= 10

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

    # progress and the cluster view ---------------------------------------------------
    async def set_progress(self, reports: Sequence[ProgressReport]) -> list[str]:
        """Write the batch in one statement, fenced by token; return the ids fenced out."""
        ids = [report.job_id for report in reports]
        tokens = [report.token for report in reports]
        texts = [dumps([p.fraction, p.message, p.attempt, p.at]) for _, _, p in reports]
        rows = await self._require_pool().fetch(self._sql.set_progress, ids, tokens, texts)
        written = {row[0] for row in rows}
        return [job_id for job_id in ids if job_id not in written]

    async def workers(self, now: float) -> list[WorkerInfo]:
        """Runners that claimed or heartbeated in the last few minutes, newest first."""
        rows = await self._require_pool().fetch(self._sql.workers, now - _KNOWN_NAMES_TTL)
        return [WorkerInfo(row[0], tuple(row[1]), float(row[2])) for row in rows]

    async def leaders(self, now: float) -> list[LeaderInfo]:
        """Every role in the leaders table."""
        rows = await self._require_pool().fetch(self._sql.leaders)
        return [LeaderInfo(row[0], row[1], float(row[2])) for row in rows]

    # flow control -----------------------------------------------------------------------------
    async def pause_queue(self, queue: str, now: float) -> bool:
        """Record the pause; every claim statement reads it, in every process."""
        return await self._require_pool().fetchval(self._sql.pause, queue, now) is not None

    async def resume_queue(self, queue: str) -> bool:
        """Delete the pause and wake the runners of every process."""
        pool = self._require_pool()
        resumed = await pool.fetchval(self._sql.resume, queue) is not None
        if resumed:
            await self._announce(pool)
        return resumed

    async def paused_queues(self) -> dict[str, float]:
        """Paused queues and when each was paused."""
        return {row[0]: float(row[1]) for row in await self._require_pool().fetch(self._sql.paused)}


# --- rows -----------------------------------------------------------------------------------
def _columns(jobs: Sequence[JobSpec]) -> list[list[Any]]:
    """The batch as the enqueue statement's column arrays; TypeError for a bad payload."""
    n = len(jobs)
    columns: list[list[Any]] = [[None] * n for _ in range(16)]
    (ids, names, queues, priorities, attempts, timeouts, keys, workspaces, triggers,
     enqueued, run_ats, args, kwargs, headers, metas, expires) = columns  # fmt: skip
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
        expires[i] = spec.expires_at
    return columns


def _state(row: Any) -> rules.JobState:
    """A row read with ``_STATE_FOR_UPDATE`` as ``transitions`` sees it (result and error not read)."""
    status, attempts, token, trigger, run_at, started_at, finished_at, worker, lease, cancel = (
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9]
    )  # fmt: skip
    return rules.JobState(
        status, attempts, token, trigger, run_at, started_at, finished_at, worker, lease, cancel, None, None
    )


def _claim_order(row: Any) -> tuple[int, float, int]:
    return row[5], row[11], row[17]


def _claimed(row: Any) -> ClaimedJob:
    (job_id, name, args_text, kwargs_text, queue, priority, max_attempts, timeout, key, workspace_id,
     enqueued_at, run_at, trigger, headers_text, meta_text, attempt, token, _seq, expires_at, _next_at,
     _expired) = row  # fmt: skip
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
         enqueued_at, run_at, trigger, headers, meta, expires_at),
    )  # fmt: skip
    return _new_tuple(ClaimedJob, (spec, attempt, token, trigger, run_at, decode_error))


def _record(row: Any) -> JobRecord:
    (job_id, name, args_text, kwargs_text, queue, priority, status_text, attempts, max_attempts, timeout,
     key, workspace_id, trigger, enqueued_at, run_at, started_at, finished_at, result_text,
     error_type, error_message, error_traceback, worker, cancel_requested, headers_text,
     meta_text, history_text, result_error, progress_text, expires_at) = row  # fmt: skip
    try:
        args, kwargs = _decode_payload(args_text, kwargs_text)
    except ValueError:
        args, kwargs = (), {}  # the claim reports it; a record still shows the rest
    status = JobStatus(status_text)
    history = [HistoryEntry(enqueued_at, JobStatus.QUEUED, 0, None, "enqueued")]
    for at, st, attempt, by, note in loads(history_text):
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
        result=None if result_text is None else loads(result_text),
        error=None
        if error_type is None
        else ErrorInfo(error_type, error_message or "", error_traceback or ""),
        worker=worker,
        cancel_requested=cancel_requested,
        headers=_loads_mapping(headers_text),
        meta=_loads_mapping(meta_text),
        history=tuple(history),
        result_error=result_error,
        progress=None if progress_text is None else Progress(*loads(progress_text)),
        expires_at=expires_at,
    )
