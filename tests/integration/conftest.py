"""Databases for the store tests: every test gets a fresh one, on SQLite and on PostgreSQL.

``db_url`` is what a user passes as ``--db`` or ``Workflow(url)``: an SQLite file in the
test's ``tmp_path``, or a ``postgresql://`` URL whose ``search_path`` is a schema created for
the test alone (``ipt_test_<random>`` in the database of ``IPT_TEST_POSTGRES``, default the
local ``test`` database; dropped afterwards). The PostgreSQL cases are marked ``external_service``: without
a server they skip, and under ``CI=true`` they fail, so CI cannot pass without running them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("IPT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HOW_TO_ENABLE = "start PostgreSQL on 127.0.0.1:5432 (trust auth, database test) or run under CI=true"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.external_service),
]


def _admin_connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (asked once per run), or None when it can."""
    try:
        conn = _admin_connect()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        return f"PostgreSQL at {where} is not reachable ({reason})"
    conn.close()
    return None


def _require_postgres(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the PostgreSQL tests to run", pytrace=False)
    pytest.skip(f"{reason}: {HOW_TO_ENABLE}")


@pytest.fixture
def postgres_url(postgres_unreachable: str | None) -> Iterator[str]:
    """A ``postgresql://`` URL of an empty schema that exists for this test only: the URL sets
    the connection's ``search_path`` to it, so every unqualified name (ipt's tables, Alembic's
    version table, COPY) lands there. Much cheaper than a database per test."""
    _require_postgres(postgres_unreachable)
    name = f"ipt_test_{secrets.token_hex(6)}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        url = make_url(PG_ADMIN_URL)
        yield url.set(query={**url.query, "options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
    finally:
        with _admin_connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``--db`` for a fresh database: an SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "ipt.sqlite")
    return str(request.getfixturevalue("postgres_url"))


def sqlalchemy_url(db_url: str) -> str:
    """The SQLAlchemy URL of a ``db_url`` (a plain path is an SQLite file; psycopg 3 for PostgreSQL)."""
    if "://" not in db_url:
        return f"sqlite:///{Path(db_url).resolve()}"
    url = make_url(db_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def raw_engine(db_url: str) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on the test's database, independent of the store's, to look
    at the rows the store wrote."""
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        yield engine
    finally:
        engine.dispose()
