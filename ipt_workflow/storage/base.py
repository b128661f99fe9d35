"""The SQL store's ground floor: one engine, its schema checked once, and the write and read
transactions every part of the store runs in.

One event is one transaction: the course row is updated only if its ``version`` is the one
that was read (optimistic concurrency), and the history, sessions, measurements and
reminders change with it or not at all. On SQLite write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..core.errors import CourseExists
from .direct import chunks, marks
from .engine import database_error, ensure_schema

__all__ = ["NOTIFY_CHANNEL", "StoreBase", "chunks"]

#: The PostgreSQL channel a course change notifies and ``ipt daemon`` listens on.
NOTIFY_CHANNEL = "ipt_reminders"


class StoreBase:
    """An engine and the transactions on it; the parts of ``SqlStore`` build on this."""

    def __init__(self, engine: Engine, *, owns_engine: bool = True) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        self.dialect = engine.dialect.name
        self._ready = False
        # The driver's own errors too: the bulk path writes through the raw connection (COPY).
        dbapi = engine.dialect.loaded_dbapi
        self._integrity_errors: tuple[type[Exception], ...] = (IntegrityError, dbapi.IntegrityError)
        self._database_errors: tuple[type[Exception], ...] = (DBAPIError, dbapi.Error)

    def ensure_schema(self) -> None:
        """Create or upgrade the schema if needed (see ``engine.ensure_schema``)."""
        if not self._ready:
            ensure_schema(self.engine)
            self._ready = True

    def close(self) -> None:
        if self.owns_engine:
            self.engine.dispose()

    def reopen(self) -> None:
        """Close the pooled connections, so the next ones open the database at its path afresh
        (a file moved into place), and check its schema again on next use."""
        self.engine.dispose()
        self._ready = False

    @contextmanager
    def _write(self, adding: bool = False) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite). A failure of the database is
        a one-line StoreError (``DatabaseBusy`` past the lock wait); when ``adding`` courses, a
        key another writer took first is ``CourseExists``. Either way it is rolled back."""
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                conn.info["immediate"] = True
                with conn.begin():
                    yield conn
        except self._integrity_errors as exc:
            if adding:
                raise CourseExists("a course id is already taken") from None
            raise database_error(exc, self.engine) from None
        except self._database_errors as exc:
            raise database_error(exc, self.engine) from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self.ensure_schema()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except self._database_errors as exc:
            raise database_error(exc, self.engine) from None

    def _notify(self, conn: Connection) -> None:
        """On PostgreSQL, tell listening daemons (``NOTIFY ipt_reminders``, no payload) that
        reminders changed; sent when this transaction commits."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")

    def _insert_rows(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]], columns: int = 0) -> None:
        if not rows:
            return
        names = [c.name for c in table.columns][: columns or None]
        if self.dialect == "postgresql":
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks(len(names))})", rows)
