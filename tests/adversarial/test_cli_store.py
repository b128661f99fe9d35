# ruff: noqa: F811  (the ``ipt`` fixture is imported, and test arguments name it)
"""What a hostile or careless user did to the command line and the store (issue 9): a database
locked by another process, a readable database file, huge or deeply nested input, a database
from a newer version, a full disk, odd CSV files, huge integers, control characters in ids,
FIFOs, and a mistyped ``--db`` path. Each time: one ``error:`` line (or a usage error), no
traceback, nothing written.

The process races (parallel creates and imports, a killed parallel import) are in
``test_cli_store_races.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.conftest import RunIpt, clean_env, error_line, ipt, usage_error  # noqa: F401  (ipt is a fixture)
from ..e2e.test_cli_courses import CREATE, HEADER, LONDON, ok, ok_json, write_csv

EVENT = ("course", "event", "C1", "hold_session", "--at", "2026-03-02T10:50", "--now", "2026-03-02T11:00")
READS: list[tuple[str, ...]] = [
    ("course", "list"),
    ("course", "show", "C1"),
    ("plan", "C1"),
    ("reminders",),
    ("reminders", "--course", "C1"),
]
SIMULATE = ("simulate", "--protocol", "ipt-16", *LONDON, "--now", "2026-03-09T12:00", "--events")


def printable(line: str) -> bool:
    return all(ch.isprintable() for ch in line)


@pytest.fixture
def db(ipt: RunIpt, tmp_path: Path) -> tuple[str, str]:
    """``--db`` of a database with course C1 (ipt-16, London, created 2026-03-01)."""
    args = ("--db", str(tmp_path / "x.sqlite"))
    assert ok(ipt(*args, *CREATE, "--id", "C1")) == "C1\n"
    return args


def version(ipt: RunIpt, db: tuple[str, str], course: str = "C1") -> int:
    shown: int = ok_json(ipt(*db, "course", "show", course, "--json"))["version"]
    return shown


def course_rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM ipt_courses ORDER BY id")]


# ---------------------------------------------------------------- 1. a database locked too long


@pytest.fixture
def locked(db: tuple[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the database's write lock (an import, a stuck writer), then, when
    told "exclusive" on stdin, an exclusive lock in rollback-journal mode, which blocks readers
    too (as a big import's commit does)."""
    script = textwrap.dedent(
        """
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        if sys.stdin.readline().strip() == "exclusive":
            conn.execute("ROLLBACK")
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("BEGIN EXCLUSIVE")
            print("exclusive", flush=True)
            sys.stdin.readline()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, db[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:  # the with-block closes its pipes
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        try:
            yield holder
        finally:
            holder.kill()
            holder.wait(10)


BUSY = {"IPT_LOCK_TIMEOUT": "1"}


def busy_line(result: subprocess.CompletedProcess[str], path: str) -> str:
    line = error_line(result)
    assert "busy" in line and path in line and "1 s" in line and "IPT_LOCK_TIMEOUT" in line, line
    return line


def test_writers_wait_for_a_lock_for_the_stated_bound_then_say_busy(
    ipt: RunIpt, tmp_path: Path, db: tuple[str, str], locked: subprocess.Popen[str]
) -> None:
    write_csv(tmp_path / "one.csv", "CL-2,T-1,ipt-16,2026-03-02,10:00,Europe/London,C2")
    for args in (EVENT, (*CREATE, "--id", "C2"), ("import", "one.csv")):
        busy_line(ipt(*db, *args, env=BUSY), db[1])
    locked.kill()
    locked.wait(10)
    assert course_rows(Path(db[1])) == ["C1"]
    assert version(ipt, db) == 1, "nothing was written"


def test_readers_blocked_by_an_exclusive_lock_say_busy(
    ipt: RunIpt, db: tuple[str, str], locked: subprocess.Popen[str]
) -> None:
    assert locked.stdin is not None and locked.stdout is not None
    locked.stdin.write("exclusive\n")
    locked.stdin.flush()
    assert locked.stdout.readline() == "exclusive\n"
    for args in READS:
        busy_line(ipt(*db, *args, env=BUSY), db[1])


# ---------------------------------------------------------------- 3. the database file's mode


def sqlite_files(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]


def open_to_others(path: Path) -> sqlite3.Connection:
    """Leave the file and its -wal and -shm readable by everyone (a copy, a restore from a
    backup, an old version); the connection keeps the sidecars in place."""
    conn = sqlite3.connect(path)
    conn.execute("SELECT count(*) FROM ipt_courses").fetchone()
    for f in sqlite_files(path):
        assert f.exists(), f
        f.chmod(0o644)
    return conn


@pytest.mark.parametrize("args", [("course", "list"), ("course", "show", "C1"), ("reminders",), EVENT])
def test_an_existing_database_readable_by_others_is_made_private(
    ipt: RunIpt, db: tuple[str, str], args: tuple[str, ...]
) -> None:
    path = Path(db[1])
    conn = open_to_others(path)
    try:
        result = ipt(*db, *args)
        ok(result)
        assert result.stderr == ""
        for f in sqlite_files(path):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        conn.close()


def test_a_database_readable_by_others_that_is_not_ours_is_used_with_a_warning(
    ipt: RunIpt, db: tuple[str, str]
) -> None:
    path = Path(db[1])
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    path.chmod(0o644)
    os.chown(path, 4242, -1)
    result = ipt(*db, "course", "list", "--json")
    assert [c["id"] for c in json.loads(ok(result))] == ["C1"]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), result.stderr
    assert str(path) in lines[0] and "0644" in lines[0], lines[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644, "not ours: left as it is"


# ---------------------------------------------------------------- 5. huge and deep input


DEEP_JSON = '{"a": ' * 5000 + "1" + "}" * 5000
NESTED_40 = '{"a": ' * 40 + "1" + "}" * 40
LONG_NUMBER = "9" * 5000


@pytest.mark.parametrize(
    ("data", "said"),
    [
        pytest.param(DEEP_JSON, "deeper than 32", id="nested-5000"),
        pytest.param(NESTED_40, "deeper than 32", id="nested-40"),
        pytest.param('{"instrument": "phq9", "score": ' + LONG_NUMBER + ', "item9": 0}', "digits", id="5000-digits"),
        pytest.param('{"x": "' + "y" * 70_000 + '"}', "64 KiB", id="70-KB"),
    ],
)
def test_event_data_too_deep_or_too_big_is_one_line(ipt: RunIpt, db: tuple[str, str], data: str, said: str) -> None:
    line = error_line(ipt(*db, "course", "event", "C1", "record_measure", "--data", data, "--now", "2026-03-02T11:00"))
    assert line.startswith("error: --data: ") and said in line, line
    assert version(ipt, db) == 1


def event_list(data: str) -> str:
    return '[{"at": "2026-03-02T10:50", "event": "record_measure", "data": ' + data + "}]"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param(event_list(DEEP_JSON), "deeper than 32", id="nested-5000"),
        pytest.param(event_list(NESTED_40), "deeper than 32", id="nested-40"),
        pytest.param("[" * 5000 + "]" * 5000, "deeper than 32", id="lists-5000"),
        pytest.param(event_list('{"instrument": "phq9", "score": ' + LONG_NUMBER + "}"), "digits", id="5000-digits"),
    ],
)
def test_simulate_events_too_deep_or_too_big_is_one_line(
    ipt: RunIpt, tmp_path: Path, suffix: str, content: str, said: str
) -> None:
    events = tmp_path / f"events{suffix}"
    events.write_text(content, encoding="utf-8")
    line = error_line(ipt(*SIMULATE, events.name))
    assert line.startswith(f"error: {events.name}: ") and said in line, line


def test_an_events_file_over_the_size_bound_is_one_line(ipt: RunIpt, tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text("[" + ",".join(['{"at": "x"}'] * 500_000) + "]", encoding="utf-8")
    line = error_line(ipt(*SIMULATE, "big.json"))
    assert line.startswith("error: big.json: ") and "4 MiB" in line, line


# ---------------------------------------------------------------- 6. newer schema, full disk


def test_a_database_from_a_newer_version_is_refused_and_left_alone(
    ipt: RunIpt, tmp_path: Path, db: tuple[str, str]
) -> None:
    path = Path(db[1])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ipt_alembic_version SET version_num = '0099'")
    conn.close()
    before = path.read_bytes()
    write_csv(tmp_path / "one.csv", "CL-2,T-1,ipt-16,2026-03-02,10:00,Europe/London,C2")
    for args in [*READS, EVENT, (*CREATE, "--id", "C2"), ("import", "one.csv")]:
        line = error_line(ipt(*db, *args))
        assert "0099" in line and "newer" in line and str(path) in line, line
    assert path.read_bytes() == before


FAILING_DISK = """
import sqlite3, sys
from sqlalchemy import event
from ipt_workflow.storage import engine as store_engine


class FailingCursor(sqlite3.Cursor):
    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)

    def executemany(self, sql, *args):
        raise sqlite3.OperationalError("disk I/O error")


class FailingConnection(sqlite3.Connection):
    def cursor(self, factory=FailingCursor):
        return super().cursor(factory)


def no_more_pages(dbapi_connection, _record):  # the file may not grow by one page: SQLITE_FULL, for real
    pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
    dbapi_connection.execute(f"PRAGMA max_page_count={pages}")


how = sys.argv.pop(1)
real_create_engine = store_engine.create_engine


def create_engine(url, **options):
    if how == "ioerror":
        options.setdefault("connect_args", {})["factory"] = FailingConnection
    engine = real_create_engine(url, **options)
    if how == "full":
        event.listen(engine, "connect", no_more_pages)
    return engine


store_engine.create_engine = create_engine
if how == "ioerror":  # the write path without SQLAlchemy (storage.lite) connects by itself
    real_connect = sqlite3.connect
    sqlite3.connect = lambda *args, **kwargs: real_connect(*args, **{**kwargs, "factory": FailingConnection})
from cli import main

sys.argv[0] = "ipt"
main()
"""


@pytest.mark.parametrize("how", ["full", "ioerror"])
def test_a_full_disk_or_an_io_error_is_one_line_and_writes_nothing(
    tmp_path: Path, db: tuple[str, str], how: str
) -> None:
    write_csv(tmp_path / "many.csv", *(f"CL-{i},T-{i},ipt-16,2026-03-02,10:00,Europe/London," for i in range(300)))
    runs = [("import", "many.csv")] if how == "full" else [("import", "many.csv"), EVENT]
    for args in runs:
        result = subprocess.run(
            [sys.executable, "-c", FAILING_DISK, how, *db, *args], cwd=tmp_path, env=clean_env(tmp_path),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        line = error_line(result)
        assert ("disk is full" if how == "full" else "disk I/O error") in line and db[1] in line, line
    assert course_rows(Path(db[1])) == ["C1"]


# ---------------------------------------------------------------- 7. CSV files


def test_a_csv_field_over_the_csv_limit_is_a_file_line_error(ipt: RunIpt, tmp_path: Path, db: tuple[str, str]) -> None:
    long_zone = "x" * 140_000
    write_csv(tmp_path / "big.csv", "CL-2,T-1,ipt-16,2026-03-02,10:00,Europe/London,C2",
              f"CL-3,T-1,ipt-16,2026-03-02,10:00,{long_zone},C3")  # fmt: skip
    line = error_line(ipt(*db, "import", "big.csv"))
    assert line.startswith("error: big.csv:3: ") and "131,072" in line, line
    assert course_rows(Path(db[1])) == ["C1"]


def test_a_csv_header_naming_a_column_twice_is_refused(ipt: RunIpt, tmp_path: Path, db: tuple[str, str]) -> None:
    write_csv(tmp_path / "twice.csv", "CL-2,T-1,ipt-16,2026-03-02,10:00,Europe/London,C2,CL-3",
              header=HEADER + ",client")  # fmt: skip
    line = error_line(ipt(*db, "import", "twice.csv"))
    assert line.startswith("error: twice.csv:1: ") and "'client'" in line and "twice" in line, line
    assert course_rows(Path(db[1])) == ["C1"]


# ---------------------------------------------------------------- 8. huge integers on options


@pytest.mark.parametrize(
    "args",
    [
        ("reminders", "--limit", "9223372036854775807"),
        ("reminders", "--limit", "1" + "0" * 40),
        ("course", "event", "C1", "hold_session", "--expect-version", "9223372036854775808"),
    ],
)
def test_huge_integers_on_options_are_usage_errors_with_the_range(
    ipt: RunIpt, db: tuple[str, str], args: tuple[str, ...]
) -> None:
    message = usage_error(ipt(*db, *args))
    assert "range" in message and "1<=x<=" in message, message
    assert version(ipt, db) == 1


# ---------------------------------------------------------------- 9. control characters in ids


@pytest.mark.parametrize(
    ("args", "bad"),
    [  # each place an id is given, each kind of bad id
        (("course", "show", "{}"), "a\nb"),
        (("course", "event", "{}", "hold_session"), "a\rb"),
        (("plan", "{}"), "\x1b[31mred"),
        (("reminders", "--course", "{}"), "a" * 65),
        (("course", "list", "--therapist", "{}"), "a b"),
        ((*CREATE, "--id", "{}"), "a\tb"),
        ((*CREATE, "--therapist", "{}"), "\u202eab"),
    ],
)
def test_ids_with_control_characters_are_refused_in_one_escaped_line(
    ipt: RunIpt, db: tuple[str, str], args: tuple[str, ...], bad: str
) -> None:
    line = error_line(ipt(*db, *(a.replace("{}", bad) for a in args)))
    assert printable(line), repr(line)
    assert "1-64" in line, line
    assert course_rows(Path(db[1])) == ["C1"]


@pytest.mark.parametrize("bad", ["Jane\nDoe", "Jane Doe", "Jane\x1bDoe"])
def test_a_bad_client_reference_is_refused_without_echoing_it(ipt: RunIpt, db: tuple[str, str], bad: str) -> None:
    line = error_line(ipt(*db, "course", "create", "--client", bad, *LONDON))
    assert "--client" in line and "Jane" not in line and "Doe" not in line, line
    assert course_rows(Path(db[1])) == ["C1"]


def test_a_nul_or_escape_in_a_csv_is_escaped_in_the_error(ipt: RunIpt, tmp_path: Path, db: tuple[str, str]) -> None:
    write_csv(tmp_path / "nul.csv", "CL-2,T-1,ipt-16,2026-03-02,10:00,Europe/London,a\x00b",
              "CL-3,T\x1b[2J,ipt-16,2026-03-02,10:00,Europe/London,C3")  # fmt: skip
    result = ipt(*db, "import", "nul.csv")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(":")[2] for line in lines] == ["2", "3"], result.stderr
    for line in lines:
        assert printable(line), repr(line)
        assert "control characters" in line and "T-1" not in line, line
    assert ": id: " in lines[0] and ": therapist: " in lines[1], lines
    assert course_rows(Path(db[1])) == ["C1"]


def test_an_unknown_event_or_protocol_with_a_newline_is_one_escaped_line(ipt: RunIpt, db: tuple[str, str]) -> None:
    for args in (("course", "event", "C1", "hold\nsession"), (*CREATE, "--protocol", "ipt\n16")):
        line = error_line(ipt(*db, *args))
        assert printable(line), repr(line)


# ---------------------------------------------------------------- 10. FIFOs


def test_a_fifo_as_the_events_file_or_the_csv_is_refused(ipt: RunIpt, tmp_path: Path, db: tuple[str, str]) -> None:
    for name in ("events.yaml", "courses.csv"):
        os.mkfifo(tmp_path / name)
    line = error_line(ipt(*SIMULATE, "events.yaml"))
    assert line.startswith("error: events.yaml: ") and "not a regular file" in line, line
    line = error_line(ipt(*db, "import", "courses.csv"))
    assert line.startswith("error: courses.csv: ") and "not a regular file" in line, line


# ---------------------------------------------------------------- 11. a mistyped --db path


@pytest.mark.parametrize("args", [*READS, EVENT])
@pytest.mark.parametrize("form", ["path", "url"])
def test_commands_that_only_read_refuse_a_database_that_does_not_exist(
    ipt: RunIpt, tmp_path: Path, args: tuple[str, ...], form: str
) -> None:
    path = tmp_path / "typo" / "clinc.sqlite"
    line = error_line(ipt("--db", str(path) if form == "path" else f"sqlite:///{path}", *args))
    assert line == f"error: no database at {path} (course create or import makes one)", line
    assert not (tmp_path / "typo").exists(), "nothing created"


def test_commands_that_write_still_create_a_new_database(ipt: RunIpt, tmp_path: Path) -> None:
    write_csv(tmp_path / "one.csv", "CL-2,T-1,ipt-16,2026-03-02,10:00,Europe/London,C2")
    ok(ipt("--db", str(tmp_path / "a" / "one.sqlite"), *CREATE, "--id", "C1"))
    ok(ipt("--db", str(tmp_path / "b" / "two.sqlite"), "import", "one.csv"))
    assert course_rows(tmp_path / "a" / "one.sqlite") == ["C1"]
    assert course_rows(tmp_path / "b" / "two.sqlite") == ["C2"]
