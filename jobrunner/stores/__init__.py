"""Stores: where jobs live. ``store_from_url`` picks one from a URL.

* ``memory://`` - this process only (the default of ``Runner()``);
* ``sqlite:///path/to/jobs.db`` - durable, embedded (``sqlite:////abs/path`` for
  an absolute path);
* ``postgresql://user@host/db`` - shared by many processes (``jobrunner[postgres]``).
"""

from __future__ import annotations

from jobrunner.stores.base import Store

__all__ = ["Store", "store_from_url"]


def store_from_url(url: str) -> Store:
    """A store for ``url``; ValueError naming the schemes if it is not one of them."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            f"store={url!r} is not a URL; use memory://, sqlite:///path/to/jobs.db "
            f"or postgresql://user@host/db"
        )
    if scheme == "memory":
        from jobrunner.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from jobrunner.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme in ("postgres", "postgresql"):
        from jobrunner.stores.postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise ValueError(
        f"store={url!r}: unknown scheme {scheme!r}; use memory://, sqlite:///path "
        f"or postgresql://user@host/db"
    )
