"""Plain SQL on a DB-API connection, for the hot path of the store (load and save of one
course): ``?`` placeholders, run on sqlite3 as they are and on psycopg as ``%s``, with the
value conversions the schema's SQLAlchemy types do (``schema.py``), so a row written here is
the row SQLAlchemy would write. Standard library only: the CLI's write path on an SQLite file
runs on it without loading SQLAlchemy; ``SqlStore`` runs the same statements on the driver
connection under its own transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy import Connection


def to_text(value: datetime) -> str:
    """The SQLite form of an instant: 'YYYY-MM-DD HH:MM:SS' in UTC, '.ffffff' only when there
    are microseconds (what ``str()`` of a naive datetime gives, fast and in time order)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return str(value.replace(tzinfo=None))


def from_text(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


#: Statements as psycopg takes them (``%s`` for ``?``), by their text.
_PG_SQL: dict[str, str] = {}


class Direct:
    """A DB-API connection (sqlite3, or psycopg 3) and the forms of values on it: instants
    (``UTCDateTime``: UTC text on SQLite, timestamptz on PostgreSQL), JSON (text on SQLite,
    ``json`` on PostgreSQL) and dates (ISO text on SQLite)."""

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.sqlite = dialect == "sqlite"
        self.dialect = dialect
        if not self.sqlite:
            from psycopg.types.json import Json

            self._json_type: Any = Json

    @classmethod
    def of(cls, conn: Connection) -> Direct:
        """The driver connection under a SQLAlchemy ``Connection`` (its transaction, as is)."""
        return cls(conn.connection.driver_connection, conn.dialect.name)

    def _text(self, sql: str) -> str:
        if self.sqlite:
            return sql
        found = _PG_SQL.get(sql)
        if found is None:
            found = _PG_SQL[sql] = sql.replace("?", "%s")
        return found

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query, as tuples."""
        if self.sqlite:  # through a cursor of the connection's own (not ``Connection.execute``)
            return list(self.raw.cursor().execute(sql, params).fetchall())
        with self.raw.cursor() as cur:
            cur.execute(self._text(sql), params)
            return list(cur.fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the rows it changed."""
        if self.sqlite:
            return int(self.raw.cursor().execute(sql, params).rowcount)
        with self.raw.cursor() as cur:
            cur.execute(self._text(sql), params)
            return int(cur.rowcount)

    def many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each parameter row (nothing when there are none)."""
        params = list(params)
        if not params:
            return
        if len(params) == 1:  # one round trip, not a pipeline of one on psycopg
            self.run(sql, params[0])
            return
        if self.sqlite:
            self.raw.cursor().executemany(sql, params)
            return
        with self.raw.cursor() as cur:
            cur.executemany(self._text(sql), params)

    # Values as bound.
    def instant(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
        return to_text(value) if self.sqlite else value

    def json(self, value: Any) -> Any:
        """A JSON column's value (``None`` as JSON ``null``, as SQLAlchemy's ``JSON`` binds it)."""
        return json.dumps(value) if self.sqlite else self._json_type(value)

    def day(self, value: date) -> Any:
        return value.isoformat() if self.sqlite else value

    # Values as read.
    @staticmethod
    def read_instant(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return from_text(value)

    def read_json(self, value: Any) -> Any:
        """A JSON column's value decoded (psycopg decodes it already); SQL NULL is None."""
        return json.loads(value) if self.sqlite and value is not None else value

    @staticmethod
    def read_date(value: Any) -> date:
        return date.fromisoformat(value) if isinstance(value, str) else value


_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def marks(n: int) -> str:
    """``?, ?, ...`` for ``n`` values."""
    return ", ".join("?" * n)
