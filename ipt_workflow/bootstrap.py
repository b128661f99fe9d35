"""The one place that picks concrete things from settings: the database, the rules, the clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # imported where used: read-only commands need neither the rules nor the models
    from sqlalchemy import Engine

    from .rulebook.files import Rulebook
    from .storage.sql import SqlStore


def default_db_path() -> Path:
    """The SQLite file used when neither --db nor IPT_DB is given (the user data directory)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("ipt-workflow", appauthor=False)) / "ipt.sqlite"


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("IPT_DB") or str(default_db_path())


def store_for(
    url: str | None = None, engine: Engine | None = None, *, create: bool = True, lock_wait: float | None = None
) -> SqlStore:
    """A store on a host application's engine (left open on close) or on ``url``. Without
    ``create`` a missing SQLite file is a StoreError. ``lock_wait``: seconds to wait for
    another process's lock (default ``IPT_LOCK_TIMEOUT``, else 30; see ``storage.lock_timeout``)."""
    from .storage.sql import SqlStore, engine_for

    if engine is not None:
        return SqlStore(engine, owns_engine=False)
    return SqlStore(engine_for(database_url(url), create=create, lock_wait=lock_wait))


def light_store_for(url: str | None = None, *, create: bool = True) -> SqlStore:
    """``store_for(url)`` for ``ipt course create`` and ``ipt course event``: on an SQLite file
    at the current schema, a store on the standard library's sqlite3 alone (``storage.lite``:
    the course methods those commands use, the rest through a ``SqlStore`` opened on first
    use); anything else (PostgreSQL, a new file, another schema revision) a ``SqlStore``."""
    from .storage.lite import open_lite

    target = database_url(url)
    lite = open_lite(target, lambda: store_for(target, create=create))
    if lite is None:
        return store_for(target, create=create)
    return cast("SqlStore", lite)  # it stands in for one: the methods those commands call


def rules_from(rules: str | Path | Rulebook | None) -> Rulebook:
    from .rulebook.files import Rulebook, load_rules

    if isinstance(rules, Rulebook):
        return rules
    return load_rules(Path(rules) if rules is not None else None)


def utc_now() -> datetime:
    """The clock, to whole seconds (what the store and reminders keep)."""
    return datetime.now(UTC).replace(microsecond=0)
