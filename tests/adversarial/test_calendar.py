"""Careless calendar changes at the command line (SPEC §9): each refusal is exit 1, one
``error:`` line naming the session and the times, and nothing written."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunIpt, error_line
from tests.e2e.conftest import ipt as ipt  # the fixture, shared with tests/e2e

NEW = ("course", "create", "--id", "c1", "--client", "C1", "--therapist", "T-1", "--start", "2027-01-04",
       "--time", "10:00", "--tz", "Europe/London", "--now", "2027-01-01T09:00")  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def event(
    ipt: RunIpt, db: Path, name: str, at: str, data: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = ("--data", json.dumps(data)) if data is not None else ()
    return ipt("--db", db, "course", "event", "c1", name, "--at", at, "--now", at, *extra)


def snapshot(db: Path) -> tuple[list[Any], ...]:
    with sqlite3.connect(db) as conn:
        return tuple(
            conn.execute(sql).fetchall()
            for sql in (
                "SELECT seq, event, at, data FROM ipt_history ORDER BY seq",
                "SELECT id, due, status FROM ipt_reminders ORDER BY id",
                "SELECT number, status, start_local FROM ipt_sessions ORDER BY number",
                "SELECT version, therapist, plan FROM ipt_courses",
            )
        )


@pytest.fixture
def db(ipt: RunIpt, tmp_path: Path) -> Path:
    path = tmp_path / "clinic.sqlite"
    ok(ipt("--db", path, *NEW))
    ok(event(ipt, path, "complete_intake", "2027-01-01T10:00"))
    return path


REFUSED = [
    pytest.param("hold_session", "2027-01-01T12:00", None, "session 1 starts Mon 2027-01-04 10:00 GMT",
                 id="hold-early"),
    pytest.param("miss_session", "2027-01-04T09:00", {"number": 1}, "session 1 starts Mon 2027-01-04 10:00 GMT",
                 id="miss-early"),
    pytest.param("reschedule_session", "2027-01-02T09:00", {"number": 2, "start": "2027-01-19T10:00"},
                 "session 2 cannot move to Tue 2027-01-19 10:00 GMT: past session 3 (Mon 2027-01-18 10:00 GMT); "
                 "use change_slot", id="past-neighbour"),
    pytest.param("reschedule_session", "2027-01-02T09:00", {"number": 2, "start": "2027-01-01T10:00"},
                 "that is before the event's time (Sat 2027-01-02 09:00 GMT)", id="before-at"),
    pytest.param("reschedule_session", "2027-01-02T09:00", {"number": 3, "start": "2027-01-11T10:20"},
                 "onto session 2 (planned, Mon 2027-01-11 10:00 GMT)", id="onto-session"),
    pytest.param("reschedule_session", "2027-01-02T09:00", {"number": 12, "start": "2027-03-28T01:30"},
                 "start: 2027-03-28 01:30 does not exist in Europe/London: the clocks go forward from 01:00 to 02:00",
                 id="dst-gap"),
    pytest.param("change_slot", "2027-01-02T09:00", {"from": 2, "weekday": "Thurs", "time": "10:00"},
                 "weekday: 'Thurs' is not one of mon, tue, wed, thu, fri, sat, sun", id="weekday"),
    pytest.param("change_slot", "2027-01-02T09:00", {"from": 2, "weekday": "thu", "time": "24:00"},
                 "time: '24:00' is not a time (HH:MM, 00:00 to 23:59)", id="time-24"),
    pytest.param("change_therapist", "2027-01-02T09:00", {"therapist": "Dr Smith"},
                 "therapist: 'Dr Smith' is not an id", id="therapist-format"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "at", "data", "message"), REFUSED)
def test_a_refused_calendar_change_is_one_line_and_writes_nothing(
    ipt: RunIpt, db: Path, name: str, at: str, data: dict[str, Any] | None, message: str
) -> None:
    before = snapshot(db)
    line = error_line(event(ipt, db, name, at, data))
    assert message in line, line
    assert snapshot(db) == before


def test_a_move_is_stored_and_shown_with_its_original_start(ipt: RunIpt, db: Path) -> None:
    ok(event(ipt, db, "reschedule_session", "2027-01-02T09:00", {"number": 2, "start": "2027-01-13T15:00"}))
    ok(event(ipt, db, "change_therapist", "2027-01-02T09:05", {"therapist": "T-2", "from": 3}))
    shown = json.loads(ok(ipt("--db", db, "course", "show", "c1", "--json")))
    planned = json.loads(ok(ipt("--db", db, "plan", "c1", "--json")))
    for sessions in (shown["sessions"], planned["sessions"]):
        two, three = sessions[1], sessions[2]
        assert (two["number"], two["start"], two["end"]) == (
            2,
            "2027-01-13T15:00:00+00:00",
            "2027-01-13T15:50:00+00:00",
        )
        assert two["original_start"] == "2027-01-11T10:00:00+00:00" and two["therapist"] == "T-1"
        assert three["original_start"] is None and three["therapist"] == "T-2"
    assert shown["therapist"] == "T-2"
    # the old reminders of session 2 are cancelled, new ones pending at exact leads
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, due, status FROM ipt_reminders WHERE session = 2 ORDER BY due").fetchall()
    pending = [(kind, due) for kind, due, status in rows if status == "pending"]
    assert [kind for kind, _ in pending].count("session_reminder") == 2
    assert ("session_moved", "2027-01-02 09:00:00") in pending  # the client's notice, due at once
    assert {status for *_, status in rows} == {"pending", "cancelled"}


def test_a_plan_stored_before_the_calendar_fields_reads_with_them(ipt: RunIpt, db: Path) -> None:
    """Plans written by an earlier version hold eight fields a session: ``course show`` gives
    the end, the course's therapist and no original start."""
    with sqlite3.connect(db) as conn:
        [(text,)] = conn.execute("SELECT plan FROM ipt_courses").fetchall()
        conn.execute("UPDATE ipt_courses SET plan = ?", (json.dumps([s[:8] for s in json.loads(text)]),))
    first = json.loads(ok(ipt("--db", db, "course", "show", "c1", "--json")))["sessions"][0]
    assert (first["start"], first["end"]) == ("2027-01-04T10:00:00+00:00", "2027-01-04T10:50:00+00:00")
    assert (first["therapist"], first["original_start"]) == ("T-1", None)
