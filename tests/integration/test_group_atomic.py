"""``ipt group event`` is one transaction (SPEC §10): a process killed while it records
attendance for 10 members leaves all of it or none, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from sqlalchemy import Engine, text

from tests.e2e.conftest import clean_env, ipt_command, run_ipt

NOW = "--now=2027-04-01T09:00:00Z"


def test_killed_group_event_writes_all_or_nothing(db_url: str, raw_engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def ok(*args: str) -> str:
        done = run_ipt("--db", db_url, *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ok("group", "create", "--protocol", "ipt-g-8", "--therapist", "T-1", "--start", "2027-04-19", "--time",
       "10:00", "--tz", "Europe/London", "--id", "G1", "--min", "2", "--max", "10", NOW)  # fmt: skip
    for i in range(10):
        ok("group", "add", "G1", "--client", f"c{i}", "--id", f"m{i}", NOW)
    env = clean_env(tmp_path, {"IPT_TEST_GROUP_WRITE_PAUSE": "30"})
    proc = subprocess.Popen(
        [*ipt_command(), "--db", db_url, "group", "event", "G1", "hold_session", "--data",
         json.dumps({"absent": ["m3"]}), "--now=2027-04-19T12:00:00Z"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    with proc.stderr:
        line = proc.stderr.readline()  # five members written, inside the transaction
        assert "test pause" in line, line
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with raw_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ipt_sessions")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM ipt_history WHERE event <> 'create'")).scalar() == 0
        assert conn.execute(text("SELECT version FROM ipt_groups")).scalar() == 1
    ok("group", "event", "G1", "hold_session", "--data", json.dumps({"absent": ["m3"]}), "--now=2027-04-19T12:00:00Z")
    with raw_engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT course_id, status FROM ipt_sessions")).all())
    assert rows == {**{f"m{i}": "held" for i in range(10)}, "m3": "missed"}
