"""One ``sqlite3`` connection served by its own thread, for the SQLite store.

A call runs a whole function (a transaction of any number of statements) in
the thread, writes that queue up meanwhile share a commit, and a cancelled
caller either withdraws its call before it starts or waits for it to end.
Nothing here knows about jobs: ``sqlite.py`` holds the schema, the SQL and
the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

import anyio

__all__ = ["Connection"]

T = TypeVar("T")


def _transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in one write transaction, taken with BEGIN IMMEDIATE.

    IMMEDIATE takes the write lock up front, so a transaction never fails half
    way because another process wrote first (WAL readers never block it).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk) roll the transaction back by themselves.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


_QUEUED_CALL, _TAKEN, _WITHDRAWN = range(3)


class _Call:
    """A call for the connection's thread: function (None: close), args, is a write.

    ``state`` goes from queued to taken (the thread started it) or withdrawn (its
    caller was cancelled first: it never runs), under the connection's lock.
    """

    __slots__ = ("args", "fn", "future", "state", "write")

    def __init__(
        self, future: asyncio.Future[Any], fn: Callable[..., Any] | None, args: tuple[Any, ...], write: bool
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.write = write
        self.state = _QUEUED_CALL


# Most writes one group commit takes: enough to share an fsync among everything
# that queued up during the previous one, few enough to hold the lock briefly.
_GROUP_MAX = 64


class Connection:
    """One ``sqlite3`` connection, owned by one thread that runs functions on it in order.

    The design of aiosqlite, with the unit of work changed: a call runs a whole
    function (a transaction of any number of statements) in the thread, so it
    costs one thread hop (17-40 us) however large the batch, and no other
    coroutine's statements can interleave with it. aiosqlite's public API
    costs a hop per statement and leaves a transaction open across event-loop
    turns; its internals differ between releases, so this owns its thread.

    Group commit: writes that queue up while the thread is busy (an enqueue, a
    claim and a settle, say) run together in one transaction, each in its own
    savepoint (a failing one is rolled back alone), so they share one commit
    and one fsync.

    A caller cancelled while its call waits in the queue withdraws it: it never
    runs. A caller cancelled once the thread has started its call waits for the
    call to end (the transaction commits or rolls back as a whole), then
    raises CancelledError: a cancelled write has either not happened or
    happened, never "maybe, later". ``last`` is the future of the latest call,
    so a read on another connection can wait for writes issued before it.

    The thread is a daemon: a runner whose store is never closed must not keep
    the interpreter from exiting, and committed work is on disk already.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._calls: SimpleQueue[_Call] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._lock = threading.Lock()
        self.last: asyncio.Future[Any] | None = None
        self.last_call: _Call | None = None

    async def start(self) -> None:
        """Start the thread and connect (in it: a connection stays in its thread)."""
        self._thread.start()
        await self.run(_no_op)

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to every caller below
            failure = exc
        calls = self._calls
        carried: _Call | None = None
        while True:
            call = carried or calls.get()
            carried = None
            future, fn, args = call.future, call.fn, call.args
            if fn is None:  # close
                if conn is not None:
                    conn.close()
                _resolve_soon([(future, None, None)])
                return
            if not self._take(call):
                continue
            if conn is None:
                _resolve_soon([(future, None, failure)])
                continue
            if not call.write:
                try:
                    _resolve_soon([(future, fn(conn, *args), None)])
                except BaseException as exc:  # the caller gets it
                    _resolve_soon([(future, None, exc)])
                continue
            group = [call]
            while len(group) < _GROUP_MAX:
                try:
                    more = calls.get_nowait()
                except Empty:
                    break
                if not more.write:
                    carried = more
                    break
                if self._take(more):
                    group.append(more)
            _resolve_soon(_commit_group(conn, group))

    def _take(self, call: _Call) -> bool:
        """In the thread: start ``call`` unless its caller withdrew it."""
        with self._lock:
            if call.state == _WITHDRAWN:
                return False
            call.state = _TAKEN
            return True

    def _withdraw(self, call: _Call) -> bool:
        """On the loop: keep ``call`` from ever running; False if it has started."""
        with self._lock:
            if call.state == _QUEUED_CALL:
                call.state = _WITHDRAWN
                return True
            return False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(sqlite3_connection, *args)`` in the thread."""
        return await self._submit(fn, args, False)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(sqlite3_connection, *args)`` in the thread, in a write transaction
        (``BEGIN IMMEDIATE``), possibly shared with other writes queued meanwhile."""
        return await self._submit(fn, args, True)

    async def _submit(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        call = _Call(future, fn, args, write)
        self._calls.put(call)
        self.last, self.last_call = future, call
        try:
            # Shielded: cancelling the caller must not mark the call done while it runs.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if self._withdraw(call):
                future.cancel()  # it never runs: reads waiting on it (``last``) go on
            else:
                await _wait_out(future)
            raise

    async def close(self) -> None:
        """Finish the calls already queued, close the connection, end the thread."""
        if self._thread.is_alive():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._calls.put(_Call(future, None, (), False))
            await asyncio.shield(future)


async def _wait_out(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, whatever cancellations arrive meanwhile.

    The caller is already cancelled and re-raises that once this returns. The
    shielded scope keeps anyio's cancellation (re-delivered at every await) from
    turning this into a busy loop; a plain asyncio cancel arrives once and is
    absorbed by the loop.
    """
    while not future.done():
        try:
            with anyio.CancelScope(shield=True):
                await asyncio.wait((future,))
        except asyncio.CancelledError:
            continue


def _commit_group(conn: sqlite3.Connection, group: list[_Call]) -> list[tuple[asyncio.Future[Any], Any, Any]]:
    """Run writes in one transaction (see ``_transaction``); each call's result or
    exception, once committed."""
    if len(group) == 1:
        future, fn, args = group[0].future, group[0].fn, group[0].args
        assert fn is not None
        try:
            return [(future, _transaction(conn, fn, *args), None)]
        except BaseException as exc:  # the caller gets it
            return [(future, None, exc)]
    outcomes: list[tuple[asyncio.Future[Any], Any, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for call in group:
            future, fn, args = call.future, call.fn, call.args
            assert fn is not None
            conn.execute("SAVEPOINT call")
            try:
                result = fn(conn, *args)
            except Exception as exc:  # this call's own failure: undo it alone
                if not conn.in_transaction:
                    raise  # it took the whole transaction with it (a full disk, say)
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                outcomes.append((future, None, exc))
            else:
                conn.execute("RELEASE call")
                outcomes.append((future, result, None))
        conn.execute("COMMIT")
    except BaseException as exc:  # the transaction failed (busy, full disk...): so did every call
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(call.future, None, exc) for call in group]
    return outcomes


def _no_op(conn: sqlite3.Connection) -> None:
    return None


def _resolve_soon(outcomes: list[tuple[asyncio.Future[Any], Any, Any]]) -> None:
    """Hand results from the thread to the futures' event loop, in one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, mine)
        except RuntimeError:
            pass  # that loop is closed: nobody is waiting any more


def _resolve(outcomes: list[tuple[asyncio.Future[Any], Any, Any]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
