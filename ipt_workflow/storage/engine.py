"""Opening a database: the engine for a URL or path (a new SQLite file private to its
owner, WAL, BEGIN IMMEDIATE for writes, a bounded wait for locks) and the schema check; and
the one-line ``StoreError`` for each way a database can fail. Loads SQLAlchemy and the table
definitions only, so read-only commands stay quick to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from ..core.errors import StoreError
from . import HEAD_REVISION, lock_timeout, sqlite_pragmas
from .failures import database_failure
from .files import create_private_file, make_private

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_LOCK_WAITS: WeakKeyDictionary[Engine, float] = WeakKeyDictionary()  # engine -> its lock wait, for messages


def engine_for(url: str, *, create: bool = True, lock_wait: float | None = None) -> Engine:
    """An engine for ``url``: a ``postgresql://`` URL (psycopg 3), an ``sqlite:///`` URL or a
    plain file path. A new SQLite file is created readable by its owner only (``create``;
    without it a missing file is a StoreError), an existing one is made so. Lock waits are
    bounded by ``lock_wait`` seconds (default ``storage.lock_timeout()``)."""
    wait = lock_timeout() if lock_wait is None else lock_wait
    if "://" not in url:
        path = Path(url).expanduser()
        url = f"sqlite:///{path.resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"url: '{url}' is not a database URL or a file path") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database or ""
        if database and database != ":memory:":
            _open_file(Path(database), create)
        engine = create_engine(parsed, connect_args={"timeout": wait})
        _sqlite_setup(engine, wait)
        return engine
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except Exception as exc:  # an unknown dialect or a missing driver
        raise StoreError(f"url: cannot use '{_shown_url(parsed)}': {exc}") from None
    if engine.dialect.name == "postgresql":
        _postgresql_setup(engine, wait)
    return engine


def _open_file(path: Path, create: bool) -> None:
    if not create and not path.exists():
        raise StoreError(f"no database at {path} (course create or import makes one)")
    try:
        create_private_file(path)
    except OSError as exc:
        raise StoreError(f"url: cannot create '{path}': {exc.strerror or exc}") from None
    make_private(path)


def _sqlite_setup(engine: Engine, wait: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in sqlite_pragmas(wait):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")

    _LOCK_WAITS[engine] = wait


def _postgresql_setup(engine: Engine, wait: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(wait * 1000)}")
        dbapi_connection.autocommit = autocommit

    _LOCK_WAITS[engine] = wait


#: The PostgreSQL advisory lock (one bigint key) held while the schema is created or upgraded.
SCHEMA_LOCK = 0x1B7_5C4E_3A


def upgrade(engine: Engine) -> None:
    """Create or upgrade ipt-workflow's tables to the current schema (Alembic, version table
    ``ipt_alembic_version``). Safe to call on every start; a host application may call it
    from its own migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        conn.info["immediate"] = True  # SQLite: take the write lock first, so a second process waits
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # One upgrader at a time: concurrent DDL on a new schema can deadlock; the one that
                # waited finds the schema at head and does nothing (the key is not a booking lock's).
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def describe(engine: Engine) -> str:
    return _shown_url(engine.url)


def _shown_url(url: Any) -> str:
    """A URL fit for a message: no password, no query (it may carry options or secrets)."""
    return str(url.set(query={}).render_as_string(hide_password=True))


def ensure_schema(engine: Engine) -> None:
    """Check the database answers and holds the current schema; create or upgrade it if
    not. Raises StoreError naming the database (never its password), and refuses a schema
    newer than this version knows without changing anything."""
    try:
        with engine.connect() as conn:
            current = revision(conn)
        if current != HEAD_REVISION:
            if current is not None and not _known_revision(current):
                raise StoreError(
                    f"database '{describe(engine)}' has schema revision {current}, newer than this version of "
                    f"ipt-workflow knows (up to {HEAD_REVISION}): upgrade ipt-workflow; nothing was changed"
                )
            try:
                upgrade(engine)
            except DBAPIError:
                # Two processes opening one new database at once both try to create it;
                # the one that lost finds the schema in place and goes on.
                with engine.connect() as conn:
                    if revision(conn) != HEAD_REVISION:
                        raise
    except DBAPIError as exc:
        raise database_error(exc, engine) from None


def _known_revision(name: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(name) is not None
    except Exception:  # alembic's own "can't locate revision"
        return False


def revision(conn: Connection) -> str | None:
    """The schema revision of the database, or None before the first migration."""
    from sqlalchemy import inspect

    if not inspect(conn).has_table("ipt_alembic_version"):
        return None
    value = conn.exec_driver_sql("SELECT version_num FROM ipt_alembic_version").scalar()
    return str(value) if value is not None else None


def database_error(exc: BaseException, engine: Engine | str) -> StoreError:
    """The one-line StoreError for a failure of the database (SQLAlchemy's error or the
    driver's): see ``failures.database_failure``."""
    where = engine if isinstance(engine, str) else describe(engine)
    wait = lock_timeout() if isinstance(engine, str) else _LOCK_WAITS.get(engine, lock_timeout())
    return database_failure(exc, where, wait)
