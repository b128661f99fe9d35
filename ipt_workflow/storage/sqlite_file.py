"""What a long-running process needs to know about an SQLite database file: how long it waits
for another process's lock, whether an error was such a wait running out, whether the file
it opened is still the one at its path, and keeping the write-ahead log empty at rest."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from ..core.errors import StoreError


def wait_for_locks(engine: Engine, seconds: float) -> None:
    """Make every connection of ``engine`` wait at most ``seconds`` for another process's lock
    (SQLite's busy timeout, opening included) before "database is locked". Connections
    already pooled are closed, so none keeps another bound."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "do_connect")
    def _open(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params["timeout"] = seconds  # the wait while the connection itself is set up

    @event.listens_for(engine, "connect")
    def _busy(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {round(seconds * 1000)}")

    engine.dispose()


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite giving up on another process's lock: raw, wrapped by
    SQLAlchemy, or reported by ``ensure_schema`` (a StoreError carrying the reason)."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig)
    return isinstance(exc, StoreError) and "locked" in str(exc)


def database_path(engine: Engine) -> Path | None:
    """The SQLite file of ``engine``, or None (PostgreSQL, an in-memory database)."""
    name = engine.url.database if engine.dialect.name == "sqlite" else None
    return Path(name) if name and name != ":memory:" else None


def identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of ``path``, or None when there is no such file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def truncate_wal(engine: Engine, path: Path, busy_seconds: float) -> None:
    """Checkpoint the write-ahead log into the database file and truncate it, if it holds
    anything, without waiting for anyone: a file moved into place later then starts with an
    empty log, not with pages of the one it replaced. Left for the next call when busy."""
    wal = path.with_name(path.name + "-wal")
    try:
        if wal.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    try:
        raw = engine.raw_connection()
    except SQLAlchemyError:
        return  # cannot even connect now (locked, say): next time
    try:
        driver: Any = raw.driver_connection
        driver.execute("PRAGMA busy_timeout = 0")
        try:
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass  # a reader or writer is in the way: next time
        finally:
            driver.execute(f"PRAGMA busy_timeout = {round(busy_seconds * 1000)}")
    finally:
        raw.close()
