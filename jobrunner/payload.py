"""Job payloads as JSON: one codec, the same rules on every store.

Arguments and results are stored as JSON (never pickle: a durable store must
not execute what it reads). The runner checks every call and every result
here before any store sees it, so what a job receives is the same whether it
was kept in memory, in SQLite or in PostgreSQL:

* accepted: ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list``
  and ``tuple`` (both come back as ``list``), ``dict`` with ``str`` keys;
  subclasses of these (``IntEnum``, ``StrEnum``...) are stored as the base
  value;
* refused with a ``TypeError`` that names the job and the argument (and
  nothing is written): anything else (sets, bytes, datetimes, objects...),
  NaN and infinities, non-``str`` dict keys, strings with lone surrogates
  (not valid Unicode), ints too large for Python's int-to-text limit, and
  payloads over the size limit;
* round trips are exact: a float comes back a float with the same bits
  (``-0.0``, ``1e300``), an int an int of any size, a string the same string
  (NUL characters included).

``normalize`` returns a fresh copy in exactly the shape ``json.loads`` would
give back, so the memory store holds what a durable store would return, and
the caller's later changes to a list it passed do not reach the job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["NO_KWARGS", "check_call", "check_result", "check_text", "dumps", "loads", "normalize", "size_of"]

_INT_DIGITS_BITS = 14_000  # about 4,200 decimal digits: under Python's 4,300-digit text limit

dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
"""Normalized value -> JSON text (compact, UTF-8 characters kept as they are)."""

loads: Callable[[str], Any] = json.JSONDecoder().decode
"""JSON text -> value."""

_ACCEPTED = "str, int, float, bool, None, lists and dicts with str keys"

NO_KWARGS: dict[str, Any] = {}
"""The kwargs of every call that has none: one shared dict, never to be mutated.

A dict per queued job is one more object for the garbage collector to count
and walk, a third of what an enqueued no-argument job leaves behind."""


class _Refused(Exception):
    """A value that JSON cannot hold, with where it sits and why."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why


def _text(value: str, path: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Refused(
                path,
                f"it holds a lone surrogate {value[exc.start]!r} at index {exc.start} (not valid Unicode)",
            ) from None
    return value


class _Walk:
    """One normalization: the copy, plus an upper bound of its JSON size in bytes."""

    __slots__ = ("bound", "depth")

    def __init__(self) -> None:
        self.bound = 0
        self.depth = 0

    def value(self, value: Any, path: str) -> Any:
        kind = type(value)
        if kind is str:
            # A character takes at most 6 bytes in JSON (a \\uXXXX escape).
            self.bound += 6 * len(value) + 2
            return _text(value, path)
        if kind is int:
            if value.bit_length() > _INT_DIGITS_BITS:
                raise _Refused(path, "the int has too many digits to store as text")
            self.bound += value.bit_length() // 3 + 2
            return value
        if kind is float:
            if not math.isfinite(value):
                raise _Refused(path, f"{value} is not a JSON number")
            self.bound += 26
            return value
        if value is None or kind is bool:
            self.bound += 5
            return value
        if kind is list or kind is tuple:
            return self.sequence(value, path)
        if kind is dict:
            return self.mapping(value, path)
        # Subclasses of the accepted types are stored as their base value, as
        # json.dumps writes them (an IntEnum as its number, a StrEnum as its text).
        if isinstance(value, bool):
            self.bound += 5
            return bool(value)
        if isinstance(value, int):
            return self.value(int(value), path)
        if isinstance(value, float):
            return self.value(float(value), path)
        if isinstance(value, str):
            return self.value(str.__str__(value), path)
        if isinstance(value, list | tuple):
            return self.sequence(value, path)
        if isinstance(value, dict):
            return self.mapping(value, path)
        hint = {
            "set": "; pass a list",
            "frozenset": "; pass a list",
            "bytes": "; pass text (e.g. base64) or a reference to where the data is",
            "datetime": "; pass an ISO string or epoch seconds",
            "date": "; pass an ISO string",
            "Decimal": "; pass a str or a float",
            "UUID": "; pass str(uuid)",
        }.get(kind.__name__, "; use plain data (an id, a dict of fields)")
        raise _Refused(path, f"{kind.__name__} is not JSON{hint}")

    def _enter(self, path: str) -> None:
        self.depth += 1
        if self.depth > 200:
            raise _Refused(path, "it is nested more than 200 deep (or refers to itself)")

    def sequence(self, value: list[Any] | tuple[Any, ...], path: str) -> list[Any]:
        self._enter(path)
        self.bound += 2 + len(value)
        item = self.value
        out = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        self.depth -= 1
        return out

    def mapping(self, value: dict[Any, Any], path: str) -> dict[str, Any]:
        self._enter(path)
        self.bound += 2 + 2 * len(value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _Refused(
                        path,
                        f"it has a {type(key).__name__} key {key!r}; JSON object keys are str "
                        f"(use str keys, or a list of pairs)",
                    )
                key = str.__str__(key)
            self.bound += 6 * len(key) + 2
            out[_text(key, f"{path} key {key!r}")] = self.value(item, f"{path}[{key!r}]")
        self.depth -= 1
        return out


def normalize(value: Any) -> Any:
    """``value`` as JSON gives it back (a fresh copy); TypeError if JSON cannot hold it."""
    try:
        return _Walk().value(value, "the value")
    except _Refused as refused:
        raise TypeError(f"{refused.path} cannot be stored as JSON: {refused.why}") from None


def size_of(value: Any) -> int:
    """Bytes of ``value``'s JSON text in UTF-8 (``value`` normalized)."""
    return len(dumps(value).encode("utf-8", "surrogatepass"))


def _too_big(size: int, limit: int) -> str:
    return f"{size:,} bytes as JSON, over the {limit:,}-byte limit (Runner(max_payload=...))"


def check_call(
    job: str, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Normalized ``(args, kwargs)`` of one call of ``job``.

    Raises TypeError naming the job and the argument that JSON cannot hold, or
    saying how far over ``limit`` bytes the call is. Nothing is written then.
    """
    walk = _Walk()
    try:
        new_args = tuple([walk.value(v, f"positional argument {i}") for i, v in enumerate(args)])
        new_kwargs = {k: walk.value(v, f"argument {k!r}") for k, v in kwargs.items()} if kwargs else NO_KWARGS
    except _Refused as refused:
        raise TypeError(
            f"job {job!r}: {refused.path} cannot be stored as JSON: {refused.why}. Jobs take "
            f"{_ACCEPTED}. Nothing was enqueued."
        ) from None
    if limit is not None and walk.bound > limit:
        size = size_of([new_args, new_kwargs])
        if size > limit:
            raise TypeError(
                f"job {job!r}: its arguments are {_too_big(size, limit)}; pass a reference to the data "
                f"(a path, a URL, a row id) instead of the data. Nothing was enqueued."
            )
    return new_args, new_kwargs


def check_result(job: str, value: Any, limit: int | None) -> Any:
    """``value`` normalized for storing as job ``job``'s result.

    Raises TypeError saying what cannot be stored: the attempt then fails
    like any other error (and is retried as its policy says).
    """
    if value is None:
        return None
    walk = _Walk()
    try:
        result = walk.value(value, "the result")
    except _Refused as refused:
        where = "" if refused.path == "the result" else f" ({refused.path.removeprefix('the result')})"
        raise TypeError(
            f"job {job!r} returned a value of type {type(value).__name__} that cannot be stored as JSON{where}: "
            f"{refused.why}. Return {_ACCEPTED}."
        ) from None
    if limit is not None and walk.bound > limit:
        size = size_of(result)
        if size > limit:
            raise TypeError(
                f"job {job!r} returned {_too_big(size, limit)}; store large results elsewhere "
                f"(a file, an object store) and return a reference."
            )
    return result


def check_text(value: str, what: str) -> str:
    """A name, key or id that every store can hold: valid Unicode, no NUL character.

    Raises ValueError saying what is wrong with ``what``.
    """
    if "\x00" in value:
        raise ValueError(f"{what}={value!r} contains a NUL character; remove it")
    try:
        return _text(value, what)
    except _Refused as refused:
        raise ValueError(f"{what}={value!r}: {refused.why}") from None
