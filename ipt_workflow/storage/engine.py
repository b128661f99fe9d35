"""Opening a database: the engine for a URL or path (a new SQLite file private to its
owner, WAL, BEGIN IMMEDIATE for writes) and the schema check. Loads SQLAlchemy and the table
definitions only, so read-only commands stay quick to start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from ..errors import StoreError
from . import HEAD_REVISION


def engine_for(url: str) -> Engine:
    """An engine for ``url``: a ``postgresql://`` URL (psycopg 3), an ``sqlite:///`` URL or a
    plain file path. A new SQLite file is created readable by its owner only."""
    if "://" not in url:
        path = Path(url).expanduser()
        url = f"sqlite:///{path.resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"--db: '{url}' is not a database URL or a file path") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database or ""
        if database and database != ":memory:":
            try:
                _create_private_file(Path(database))
            except OSError as exc:
                raise StoreError(f"--db: cannot create '{database}': {exc.strerror or exc}") from None
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_setup(engine)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except Exception as exc:  # an unknown dialect or a missing driver
        raise StoreError(f"--db: cannot use '{parsed.render_as_string(hide_password=True)}': {exc}") from None


def _create_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves
        cursor = dbapi_connection.cursor()
        pragmas = (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "busy_timeout=30000",
            "synchronous=NORMAL",
            "cache_size=-65536",
        )
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")


def upgrade(engine: Engine) -> None:
    """Create or upgrade ipt-workflow's tables to the current schema (Alembic, version table
    ``ipt_alembic_version``). Safe to call on every start; a host application may call it
    from its own migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "migrations"))
    with engine.connect() as conn:
        conn.info["immediate"] = True  # SQLite: take the write lock first, so a second process waits
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def ensure_schema(engine: Engine) -> None:
    """Check the database answers and holds the current schema; create or upgrade it if
    not. Raises StoreError naming the database (never its password)."""
    try:
        with engine.connect() as conn:
            current = revision(conn)
        if current != HEAD_REVISION:
            try:
                upgrade(engine)
            except DBAPIError:
                # Two processes opening one new database at once both try to create it;
                # the one that lost finds the schema in place and goes on.
                with engine.connect() as conn:
                    if revision(conn) != HEAD_REVISION:
                        raise
    except (OperationalError, DBAPIError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"database '{describe(engine)}' cannot be used: {reason}") from None


def revision(conn: Connection) -> str | None:
    """The schema revision of the database, or None before the first migration."""
    from sqlalchemy import inspect

    if not inspect(conn).has_table("ipt_alembic_version"):
        return None
    value = conn.exec_driver_sql("SELECT version_num FROM ipt_alembic_version").scalar()
    return str(value) if value is not None else None
