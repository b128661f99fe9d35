"""Clashes (SPEC §9): a plan that books a therapist over another course's session is refused
(exit 1, one line naming therapist, weekday, time, zone, course and session; nothing written),
booked with ``--allow-clash`` / ``force: true`` and a ``schedule_conflict`` alert, and a
replan that a fact forces (a miss) is never refused but raises the alert.

Course A (T-07, Mondays 10:00 London from 2027-01-04, 12 sessions to 2027-03-22) is the
booking in the way; a 13th session (``extend``, or the shift after a miss) falls on Easter
Monday 2027-03-29 and moves to Tuesday 2027-03-30 10:00 BST.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ..e2e.conftest import RunIpt, error_line
from ..e2e.conftest import ipt as ipt  # the fixture, shared with tests/e2e
from ..e2e.test_cli_courses import write_csv

NOW = ("--now", "2026-12-01T09:00")
Done = subprocess.CompletedProcess[str]


def create(ipt: RunIpt, course_id: str, start: str, time: str = "10:00", *extra: str, therapist: str = "T-07") -> Done:
    return ipt("--db", "ipt.db", "course", "create", "--client", f"CL-{course_id}", "--start", start, "--time", time,
               "--tz", "Europe/London", "--therapist", therapist, "--id", course_id, *NOW, *extra)  # fmt: skip


def rows(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "ipt.db") as conn:
        return conn.execute(sql).fetchall()


def conflicts(tmp_path: Path) -> list[tuple[object, ...]]:
    return rows(tmp_path, "SELECT course_id, session, rule, audience, status FROM ipt_reminders "
                          "WHERE kind = 'schedule_conflict' ORDER BY course_id, session")  # fmt: skip


@pytest.fixture
def booked(ipt: RunIpt, tmp_path: Path) -> Path:
    assert create(ipt, "A", "2027-01-04").returncode == 0
    return tmp_path


def test_a_course_over_a_booked_session_is_refused_naming_it(ipt: RunIpt, booked: Path) -> None:
    before = rows(booked, "SELECT count(*) FROM ipt_reminders")
    line = error_line(create(ipt, "B", "2027-01-11", "10:30"))
    assert line == "error: therapist T-07 is booked Mon 2027-01-11 10:00–10:50 GMT (course A, session 2)"
    assert rows(booked, "SELECT id FROM ipt_courses") == [("A",)]
    assert rows(booked, "SELECT count(*) FROM ipt_reminders") == before


def test_the_whole_course_is_checked_on_both_sides(ipt: RunIpt, booked: Path) -> None:
    # A's last session; then a new course whose fifth session (after a bank holiday) meets A's first
    assert error_line(create(ipt, "B", "2027-03-22")) == (
        "error: therapist T-07 is booked Mon 2027-03-22 10:00–10:50 GMT (course A, session 12)"
    )
    assert error_line(create(ipt, "C", "2026-12-07")) == (
        "error: therapist T-07 is booked Mon 2027-01-04 10:00–10:50 GMT (course A, session 1)"
    )
    assert rows(booked, "SELECT id FROM ipt_courses") == [("A",)]


def test_other_therapists_free_times_and_finished_courses_do_not_clash(ipt: RunIpt, booked: Path) -> None:
    assert create(ipt, "B", "2027-01-04", therapist="T-08").returncode == 0
    assert create(ipt, "C", "2027-01-04", "10:50").returncode == 0  # starts as A's session ends
    assert create(ipt, "D", "2027-01-04", therapist="unassigned").returncode == 0
    assert create(ipt, "E", "2027-01-04", therapist="unassigned").returncode == 0
    withdraw = ipt("--db", "ipt.db", "course", "event", "A", "withdraw", *NOW)
    assert withdraw.returncode == 0, withdraw.stderr
    assert create(ipt, "F", "2027-01-04").returncode == 0  # A no longer holds T-07
    assert conflicts(booked) == []


def test_allow_clash_books_it_with_an_alert_naming_both_sessions(ipt: RunIpt, booked: Path) -> None:
    result = create(ipt, "B", "2027-03-22", "10:00", "--allow-clash")
    assert (result.returncode, result.stdout) == (0, "B\n"), result.stderr
    assert conflicts(booked) == [("B", 1, "clash:A#12", "therapist", "pending")]


def test_a_session_buffer_books_the_therapist_after_each_session(ipt: RunIpt, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    from ipt_workflow.testing import clinic_rules

    clinic_rules(rules)
    clinic = rules / "clinic.yaml"
    clinic.write_text(clinic.read_text().replace("session_buffer: 0m", "session_buffer: 15m"))
    first = ("course", "create", "--client", "CL-A", "--start", "2027-01-04", "--time", "10:00", "--tz",
             "Europe/London", "--therapist", "T-07", "--id", "A", *NOW)  # fmt: skip
    assert ipt("--rules", rules, "--db", "ipt.db", *first).returncode == 0
    late = ("course", "create", "--client", "CL-B", "--start", "2027-01-04", "--time", "11:00", "--tz",
            "Europe/London", "--therapist", "T-07", "--id", "B", *NOW)  # fmt: skip
    assert error_line(ipt("--rules", rules, "--db", "ipt.db", *late)) == (
        "error: therapist T-07 is booked Mon 2027-01-04 10:00–10:50 GMT (course A, session 1)"
    )
    assert ipt("--db", "ipt.db", *late).returncode == 0  # the built-in rules: no buffer


def test_session_buffer_is_a_bounded_duration(ipt: RunIpt, tmp_path: Path) -> None:
    from ipt_workflow.testing import clinic_rules

    for value, message in (("5h", "'5h' is longer than 4h"), ("soon", "'soon' is not a duration")):
        rules = clinic_rules(tmp_path / f"rules-{value}")
        clinic = rules / "clinic.yaml"
        clinic.write_text(clinic.read_text().replace("session_buffer: 0m", f"session_buffer: {value}"))
        result = ipt("--rules", rules, "rules", "check")
        assert result.returncode == 1
        assert "session_buffer" in result.stderr and message in result.stderr


def event(ipt: RunIpt, course: str, name: str, data: dict[str, object] | None = None, at: str = NOW[1]) -> Done:
    extra = ("--data", json.dumps(data)) if data is not None else ()
    return ipt("--db", "ipt.db", "course", "event", course, name, "--at", at, *extra, "--now", at)


def test_extend_into_a_booked_session_is_refused_unless_forced(ipt: RunIpt, booked: Path) -> None:
    assert create(ipt, "B", "2027-03-30").returncode == 0  # a Tuesday: free of A until A moves there
    version = rows(booked, "SELECT version FROM ipt_courses WHERE id = 'A'")
    assert error_line(event(ipt, "A", "extend", {"sessions": 1})) == (
        "error: therapist T-07 is booked Tue 2027-03-30 10:00–10:50 BST (course B, session 1)"
    )
    assert rows(booked, "SELECT version FROM ipt_courses WHERE id = 'A'") == version
    not_bool = event(ipt, "A", "extend", {"sessions": 1, "force": "yes"})
    assert error_line(not_bool).endswith("force: must be true or false")
    forced = event(ipt, "A", "extend", {"sessions": 1, "force": True})
    assert forced.returncode == 0, forced.stderr
    assert conflicts(booked) == [("A", 13, "clash:B#1", "therapist", "pending")]
    assert error_line(event(ipt, "A", "hold_session", {"force": True})).endswith("force: unknown field")


def test_a_miss_that_shifts_the_plan_into_a_booking_is_recorded_with_an_alert(ipt: RunIpt, booked: Path) -> None:
    assert create(ipt, "B", "2027-03-30").returncode == 0
    missed = event(ipt, "A", "miss_session", at="2027-01-04T11:00")
    assert missed.returncode == 0, missed.stderr
    assert rows(booked, "SELECT number, status FROM ipt_sessions WHERE course_id = 'A'") == [(1, "missed")]
    assert conflicts(booked) == [("A", 13, "clash:B#1", "therapist", "pending")]


def test_an_import_that_clashes_is_refused_whole_naming_each_row(ipt: RunIpt, booked: Path) -> None:
    csv = write_csv(
        booked / "in.csv",
        "CL-1,T-07,ipt-16,2027-03-22,10:30,Europe/London,I1",  # over A's session 12
        "CL-2,T-09,ipt-16,2027-01-05,09:00,Europe/London,I2",
        "CL-3,T-09,ipt-16,2027-01-05,09:30,Europe/London,I3",  # over the row above
        "CL-4,T-10,ipt-16,2027-01-05,09:00,Europe/London,I4",
    )
    result = ipt("--db", "ipt.db", "import", csv, *NOW)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {csv}:2: therapist T-07 is booked Mon 2027-03-22 10:00–10:50 GMT (course A, session 12)",
        f"error: {csv}:4: therapist T-09 is booked Tue 2027-01-05 09:00–09:50 GMT (course I2, session 1)",
    ]
    assert rows(booked, "SELECT id FROM ipt_courses") == [("A",)]
    skipped = ipt("--db", "ipt.db", "import", csv, "--skip-bad", *NOW)
    assert skipped.returncode == 0 and "imported 2 of 4 courses, 2 refused" in skipped.stdout
    assert rows(booked, "SELECT id FROM ipt_courses ORDER BY id") == [("A",), ("I2",), ("I4",)]


def test_an_import_with_allow_clash_books_every_row_with_alerts(ipt: RunIpt, booked: Path) -> None:
    csv = write_csv(
        booked / "in.csv",
        "CL-1,T-07,ipt-16,2027-03-22,10:30,Europe/London,I1",
        "CL-2,T-09,ipt-16,2027-01-05,09:00,Europe/London,I2",
        "CL-3,T-09,ipt-16,2027-01-05,09:30,Europe/London,I3",
    )
    result = ipt("--db", "ipt.db", "import", csv, "--allow-clash", *NOW)
    assert result.returncode == 0, result.stderr
    assert conflicts(booked) == [
        ("I1", 1, "clash:A#12", "therapist", "pending"),
        ("I3", 1, "clash:I2#1", "therapist", "pending"),
    ]


def test_the_library_raises_schedule_clash_and_books_with_allow_clash(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from ipt_workflow import ScheduleClash, Workflow

    with Workflow(str(tmp_path / "lib.db"), clock=lambda: datetime(2026, 12, 1, 9, tzinfo=UTC)) as wf:
        args = {"start": "2027-01-04", "time": "10:00", "tz": "Europe/London", "therapist": "T-07"}
        wf.create_course(client="CL-A", course_id="A", **args)
        with pytest.raises(ScheduleClash, match=r"^therapist T-07 is booked Mon 2027-01-04 10:00–10:50 GMT"):
            wf.create_course(client="CL-B", course_id="B", **args)
        assert [c.id for c in wf.courses()] == ["A"]
        booked = wf.create_course(client="CL-B", course_id="B", allow_clash=True, **args)
        alerts = sorted((a.session or 0, a.kind, a.rule) for a in booked.alerts)
        assert alerts[:2] == [(1, "schedule_conflict", "clash:A#1"), (2, "schedule_conflict", "clash:A#2")]
