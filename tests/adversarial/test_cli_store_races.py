"""Real processes racing on one database (issue 9): two ``ipt course create --id X`` at once,
two imports of one CSV at once, a ``course event`` waiting on a PostgreSQL row lock, and a
parallel import killed with SIGKILL. SQLite and PostgreSQL (``external_service``).

To make a race certain rather than likely, a holder process takes the write lock first; both
racers get past their own checks and wait for it (seen in ``/proc/PID/wchan`` on SQLite and in
``pg_locks`` on PostgreSQL); then the holder lets go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from ..e2e.conftest import clean_env, error_line, ipt_command
from ..e2e.test_cli_courses import CREATE, write_csv
from ..integration.conftest import db_url, postgres_unreachable, postgres_url, sqlalchemy_url  # noqa: F401

WAIT = 60  # seconds: every wait here is bounded


def start(db: str, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ipt_command(), "--db", db, *(str(a) for a in args)],
        cwd=cwd, env=clean_env(cwd, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=WAIT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(db: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return finish(start(db, *args, cwd=cwd))


def stored_ids(db: str) -> list[str]:
    engine = create_engine(sqlalchemy_url(db))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT id FROM ipt_courses ORDER BY id")).scalars())
    finally:
        engine.dispose()


def until(condition: Callable[[], bool], seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def sleeping(pid: int) -> bool:
    """The process sleeps in a timed wait: SQLite's busy handler backing off."""
    try:
        return "nanosleep" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


@contextmanager
def write_lock_held(db: str, racers: Callable[[], list[int]]) -> Iterator[None]:
    """Hold the write lock on ``db`` until every process of ``racers()`` waits for it."""
    if "://" not in db:
        script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        script += "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.readline()\n"
        with subprocess.Popen([sys.executable, "-c", script, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) as holder:  # fmt: skip
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            try:
                yield
                assert until(lambda: all(sleeping(pid) for pid in racers())), "the racers never waited for the lock"
            finally:
                holder.kill()
                holder.wait(10)
        return
    with psycopg.connect(sqlalchemy_url(db).replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("LOCK TABLE ipt_courses IN SHARE MODE")  # reads go on; every insert waits
        yield
        # a racer waits on a table of this test's schema, or on a booking lock (storage/bookings.py)
        waiting = (
            "SELECT count(DISTINCT l.pid) FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation "
            "WHERE NOT l.granted AND (c.relnamespace = current_schema()::regnamespace "
            "OR (l.locktype = 'advisory' AND l.classid IN (1768977408, 1768977409)))"
        )
        racing = len(racers())
        assert until(lambda: conn.execute(waiting).fetchone() == (racing,)), "the racers never waited for the lock"
        conn.rollback()


LONG_WAIT = {"IPT_LOCK_TIMEOUT": str(WAIT)}


def test_two_creates_of_one_id_at_once_one_wins_the_other_says_it_exists(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    assert run(db_url, *CREATE, "--id", "C0", cwd=tmp_path).returncode == 0
    procs: list[subprocess.Popen[str]] = []
    with write_lock_held(db_url, lambda: [p.pid for p in procs]):
        procs += [start(db_url, *CREATE, "--id", "X", cwd=tmp_path, env=LONG_WAIT) for _ in range(2)]
    results = sorted((finish(p) for p in procs), key=lambda r: r.returncode)
    assert (results[0].returncode, results[0].stdout, results[0].stderr) == (0, "X\n", "")
    assert error_line(results[1]) == "error: --id: course 'X' already exists"
    assert stored_ids(db_url) == ["C0", "X"]


def test_two_imports_of_one_csv_at_once_one_wins_the_other_writes_nothing(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    assert run(db_url, *CREATE, "--id", "C0", cwd=tmp_path).returncode == 0
    rows = [f"IM-{i},T-{i},ipt-16,2026-03-02,10:00,Europe/London," for i in range(60)]  # not C0's client
    rows[0] += "B1"
    write_csv(tmp_path / "courses.csv", *rows)
    procs: list[subprocess.Popen[str]] = []
    with write_lock_held(db_url, lambda: [p.pid for p in procs]):
        procs += [start(db_url, "import", "courses.csv", cwd=tmp_path, env=LONG_WAIT) for _ in range(2)]
    done = [finish(p) for p in procs]
    winner = [r for r in done if r.stdout == "imported 60 of 60 courses\n"]
    assert len(winner) == 1 and (winner[0].returncode, winner[0].stderr) == (0, ""), done
    loser = next(r for r in done if r is not winner[0])
    if loser.returncode == 0:
        # It read the stored courses after the winner's commit: each row is found, none imported.
        found = "imported 0 of 60 courses, 60 already imported (left as they are)\n"
        assert (loser.stdout, loser.stderr) == (found, "")
    else:
        # It read before the commit: it finds every row booked by the winner (SPEC §9), before B1 taken.
        refused = loser.stderr.splitlines()
        assert (loser.returncode, loser.stdout, len(refused)) == (1, "", 60), loser.stderr
        booked = "therapist T-0 is booked Mon 2026-03-02 10:00–10:50 GMT (course B1, session 1)"
        assert refused[0] == f"error: courses.csv:2: {booked}"
    ids = stored_ids(db_url)
    assert len(ids) == 61 and ids.count("B1") == 1, "one import, once"


@pytest.mark.external_service
def test_a_row_lock_held_too_long_on_postgresql_is_a_busy_line(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    assert run(postgres_url, *CREATE, "--id", "C1", cwd=tmp_path).returncode == 0
    with psycopg.connect(sqlalchemy_url(postgres_url).replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("SELECT 1 FROM ipt_courses WHERE id = 'C1' FOR UPDATE")
        event = ("course", "event", "C1", "hold_session", "--at", "2026-03-02T10:50", "--now", "2026-03-02T11:00")
        result = finish(start(postgres_url, *event, cwd=tmp_path, env={"IPT_LOCK_TIMEOUT": "1"}))
        conn.rollback()
    line = error_line(result)
    assert "busy" in line and "1 s" in line and "IPT_LOCK_TIMEOUT" in line, line
    assert "127.0.0.1" in line and "search_path" not in line, line


# ---------------------------------------------------------------- a killed parallel import


def children(pid: int) -> set[int]:
    """Every process whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_the_workers_of_a_killed_parallel_import_die_with_it(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("the import plans in worker processes only with 2 cores or more")
    rows = [f"CL-{i},T-{i},ipt-16,2026-03-02,10:00,Europe/London" for i in range(6000)]
    write_csv(tmp_path / "big.csv", *rows, header="client,therapist,protocol,start,time,tz")
    db = str(tmp_path / "x.sqlite")
    workers: set[int] = set()
    with start(db, "import", "big.csv", "--now", "2026-03-01T00:00", cwd=tmp_path) as importer:
        try:
            assert until(lambda: len(children(importer.pid)) >= 2 or importer.poll() is not None)
            workers = children(importer.pid)
            assert importer.poll() is None and len(workers) >= 2, "the import planned in worker processes"
            importer.send_signal(signal.SIGKILL)
            importer.wait(10)
            assert until(lambda: not any(alive(w) for w in workers), 5), [w for w in workers if alive(w)]
        finally:
            importer.kill()
            for worker in workers:  # leave nothing behind, whatever happened
                if alive(worker):
                    os.kill(worker, signal.SIGKILL)
