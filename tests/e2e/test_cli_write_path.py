"""`ipt course create` and `ipt course event` on an SQLite file at the current schema run on the
standard library's sqlite3 alone (issue 15: the write path at interactive speed): no SQLAlchemy
module is loaded, and what they print and store is what the SQLAlchemy store gives."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import clean_env

# Runs the CLI in this process and reports whether SQLAlchemy was loaded; with "sqlalchemy" as its
# first argument, the two commands use the SQLAlchemy store (the reference to compare with).
RUNNER = """
import sys
import cli
if sys.argv[1] == "sqlalchemy":
    cli.App.light_store = lambda self, create: self._open(create)
sys.argv = ["ipt", *sys.argv[2:]]
try:
    cli.main()
finally:
    print("sqlalchemy loaded" if "sqlalchemy" in sys.modules else "sqlalchemy not loaded", file=sys.stderr)
"""

NOW = ("--now", "2027-01-01T09:00")
MEASURE = '{"instrument": "phq9", "score": 14, "item9": 1}'


def run(tmp: Path, path: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, path, "--db", str(db), *args],
        cwd=tmp,
        env=clean_env(tmp),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create(therapist: str, cid: str, slot: str = "10:00") -> tuple[str, ...]:
    return ("course", "create", "--client", f"CL-{cid}", "--start", "2027-01-04", "--time", slot,
            "--tz", "Europe/London", "--therapist", therapist, "--id", cid, *NOW)  # fmt: skip


def event(cid: str, name: str, *extra: str, day: str = "2027-01-02") -> tuple[str, ...]:
    """``name`` on ``cid`` at 12:00 UTC on ``day`` (then too)."""
    return ("course", "event", cid, name, *extra, "--now", f"{day}T12:00", "--at", f"{day}T12:00Z")


def rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, each value with its SQLite type, in a stable order."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {}
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            select = ", ".join(f"{c}, typeof({c})" for c in columns)
            out[table] = sorted(conn.execute(f"SELECT {select} FROM {table}"), key=repr)
        return out
    finally:
        conn.close()


def both(tmp: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``args`` on ``db`` without SQLAlchemy and on a copy of it with the SQLAlchemy store;
    the output, exit status and rows are the same. Returns the first run."""
    reference = db.with_name("reference.sqlite")
    shutil.copy(db, reference)
    lite = run(tmp, "lite", db, *args)
    full = run(tmp, "sqlalchemy", reference, *args)
    assert lite.stderr.splitlines()[-1] == "sqlalchemy not loaded", lite.stderr
    assert full.stderr.splitlines()[-1] == "sqlalchemy loaded", full.stderr
    assert (lite.returncode, lite.stdout) == (full.returncode, full.stdout)
    assert lite.stderr.splitlines()[:-1] == [line.replace(str(reference), str(db))
                                             for line in full.stderr.splitlines()[:-1]]  # fmt: skip
    assert rows(db) == rows(reference)
    return lite


def refused(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 1, nothing on stdout, one ``error:`` line on stderr (before the runner's own)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert (result.returncode, result.stdout) == (1, ""), result
    lines = result.stderr.splitlines()[:-1]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines


def test_course_create_and_event_load_no_sqlalchemy_and_write_what_it_writes(tmp_path: Path) -> None:
    db = tmp_path / "ipt.sqlite"
    first = run(tmp_path, "lite", db, *create("T-1", "C1"))  # a new file: made through SQLAlchemy
    assert first.returncode == 0, first.stderr
    assert both(tmp_path, db, *create("T-2", "C2", "12:00"), "--json").returncode == 0
    assert both(tmp_path, db, *create("unassigned", "C3")).stdout == "C3\n"
    steps = [
        event("C1", "complete_intake"),
        event("C1", "record_measure", "--data", MEASURE, "--json"),
        event("C1", "hold_session", day="2027-01-04"),
        event("C1", "set_focus", "--data", '{"areas": ["grief"]}', day="2027-01-05"),
        event("C1", "start_intervention", "--json", day="2027-01-05"),
        event("C1", "miss_session", day="2027-01-11"),
        event("C1", "reschedule_session", "--data", '{"number": 4, "start": "2027-01-19T12:00"}', day="2027-01-12"),
        event("C1", "change_therapist", "--data", '{"therapist": "T-2", "force": true}', "--json", day="2027-01-12"),
        event("C1", "pause", day="2027-01-13"),
        event("C1", "resume", day="2027-01-14"),
        event("C2", "withdraw"),
    ]
    for args in steps:
        result = both(tmp_path, db, *args)
        assert result.returncode == 0, (args, result.stderr)
    shown = json.loads(both(tmp_path, db, *event("C3", "complete_intake"), "--json").stdout)
    assert shown["id"] == "C3" and shown["version"] == 2


def test_refusals_and_conflicts_read_the_same_without_sqlalchemy(tmp_path: Path) -> None:
    db = tmp_path / "ipt.sqlite"
    assert run(tmp_path, "lite", db, *create("T-1", "C1")).returncode == 0
    refused(both(tmp_path, db, *create("T-1", "C2")))  # a clash with C1: refused
    assert both(tmp_path, db, *create("T-1", "C2"), "--allow-clash").returncode == 0
    refused(both(tmp_path, db, *create("T-1", "C2")))  # the id is taken
    refused(both(tmp_path, db, *event("C9", "complete_intake")))  # unknown course
    refused(both(tmp_path, db, *event("C1", "complete_intake", "--expected-version", "7")))
    refused(both(tmp_path, db, *event("C1", "start_intervention")))  # not allowed in intake
    moved = '{"number": 2, "start": "2027-01-18T10:00"}'  # onto C2's session 3 (and C1's own)
    assert both(tmp_path, db, *event("C1", "reschedule_session", "--data", moved)).returncode == 1
