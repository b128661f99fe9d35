"""The stored-course commands end to end (SPEC §6-8, issue 3): ``course create|list|show|event``,
``plan``, ``reminders`` and ``import``, the real console script against a private SQLite file.

Every test has its own database file. A course walked from intake into intervention is built
once per module (those runs are checked by ``test_course_event_walks_a_course_into_intervention``)
and each test that needs it gets a copy of the file, which saves about ten runs per test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from .conftest import RULES, RunIpt, error_line, run_ipt, usage_error

LONDON = ("--start", "2026-03-02", "--time", "10:00", "--tz", "Europe/London")
CREATE = ("course", "create", "--client", "CL-1", *LONDON, "--now", "2026-03-01T09:00")
LOCAL_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
UTC_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00|Z)$")
PHASES = {"intake", "assessment", "intervention", "termination"}
SESSION_STATUSES = {"planned", "held", "missed", "cancelled"}
REMINDER_STATUSES = {"pending", "delivered", "skipped", "cancelled", "failed"}
BAR_CHARS = ("━", "█", "▏", "%", "\r", "planning courses")
HEADER = "client,therapist,protocol,start,time,tz,id"

# The module's course C1 (ipt-16, Mondays 10:00 London): naive --at is London time, naive --now UTC
# (the same in early March). Each step: event, at, data, the state and version it leads to.
WALK: list[tuple[str, str, dict[str, Any] | None, str, int]] = [
    ("hold_session", "2026-03-02T10:50", None, "intake", 2),
    ("record_measure", "2026-03-02T10:55", {"instrument": "phq9", "score": 18, "item9": 0}, "intake", 3),
    ("complete_intake", "2026-03-02T11:00", None, "assessment", 4),
    ("hold_session", "2026-03-09T10:50", None, "assessment", 5),
    ("set_focus", "2026-03-09T10:55", {"areas": ["grief"]}, "assessment", 6),
    ("start_intervention", "2026-03-09T11:00", None, "intervention", 7),
]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def db_args(tmp_path: Path) -> tuple[str, str]:
    return ("--db", str(tmp_path / "x.sqlite"))


def copy_db(source: Path, target: Path) -> None:
    """Copy an SQLite file and whatever WAL sidecars it has."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy2(f"{source}{suffix}", f"{target}{suffix}")


def write_csv(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def bad_row_lines(result: subprocess.CompletedProcess[str], name: str) -> dict[int, str]:
    """The ``error: FILE:LINE: message`` lines of a refused import, by line number."""
    assert "Traceback" not in result.stderr, result.stderr
    found: dict[int, str] = {}
    for line in result.stderr.splitlines():
        match = re.match(rf"^error: {re.escape(name)}:(\d+): \S", line)
        assert match, line
        assert int(match[1]) not in found, result.stderr
        found[int(match[1])] = line
    return found


def course_ids(ipt: RunIpt, db: tuple[str, str], *filters: str) -> list[str]:
    return [row["id"] for row in ok_json(ipt(*db, "course", "list", *filters, "--json"))]


# ---------------------------------------------------------------- the module's course


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[subprocess.CompletedProcess[str]]]:
    """C1 created and walked into intervention; (its database file, every run in order)."""
    base = tmp_path_factory.mktemp("walk")
    db = ("--db", str(base / "template.sqlite"))
    runs = [run_ipt(*db, *CREATE, "--id", "C1", cwd=base)]
    for i, (event, at, data, _, _) in enumerate(WALK):
        args = [*db, "course", "event", "C1", event, "--at", at, "--now", at]
        if data is not None:
            args += ["--data", json.dumps(data)]
        if i == len(WALK) - 1:
            args.append("--json")
        runs.append(run_ipt(*args, cwd=base))
    return base / "template.sqlite", runs


@pytest.fixture
def walked(walk: tuple[Path, list[subprocess.CompletedProcess[str]]], tmp_path: Path) -> tuple[str, str]:
    """This test's own copy of the walked course's database: the ``--db`` arguments."""
    copy_db(walk[0], tmp_path / "x.sqlite")
    return db_args(tmp_path)


@pytest.fixture
def walked_json(walk: tuple[Path, list[subprocess.CompletedProcess[str]]]) -> dict[str, Any]:
    data: dict[str, Any] = ok_json(walk[1][-1])
    return data


# ---------------------------------------------------------------- course create


def test_course_create_prints_the_id_alone_in_a_private_file(ipt: RunIpt, tmp_path: Path) -> None:
    previous = os.umask(0)  # even a permissive umask must not open the file to others
    try:
        result = ipt(*db_args(tmp_path), *CREATE)
    finally:
        os.umask(previous)
    lines = ok(result).splitlines()
    assert len(lines) == 1 and re.fullmatch(r"[A-Za-z0-9._:-]+", lines[0]), result.stdout
    assert result.stderr == ""
    for path in tmp_path.glob("x.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    shown = ok_json(ipt(*db_args(tmp_path), "course", "show", lines[0], "--json"))
    assert (shown["id"], shown["client"], shown["therapist"], shown["protocol"]) == (
        lines[0], "CL-1", "unassigned", "ipt-16",
    )  # fmt: skip


def test_course_create_json_shape_and_a_duplicate_id(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    result = ipt(*db, *CREATE, "--id", "C-7", "--protocol", "ipt-b-8", "--therapist", "T-1", "--json")
    course = ok_json(result)
    assert set(course) >= {
        "id", "client", "therapist", "protocol", "protocol_version", "timezone", "state", "focus",
        "current_focus", "sessions", "history",
    }  # fmt: skip
    assert course["id"] == "C-7"
    assert (course["client"], course["therapist"], course["protocol"]) == ("CL-1", "T-1", "ipt-b-8")
    assert isinstance(course["protocol_version"], str) and course["protocol_version"]
    assert (course["timezone"], course["state"], course["focus"], course["current_focus"]) == (
        "Europe/London", "intake", [], None,
    )  # fmt: skip
    sessions = course["sessions"]
    assert [s["number"] for s in sessions] == list(range(1, len(sessions) + 1))
    assert len(sessions) >= 8
    for s in sessions:
        assert set(s) >= {"number", "phase", "start", "status"}, s
        assert LOCAL_ISO.match(s["start"]), s
        assert s["phase"] in PHASES and s["status"] == "planned", s
    assert sessions[0]["start"] == "2026-03-02T10:00:00+00:00"
    assert [{k: h[k] for k in ("event", "at", "from", "to", "rule")} for h in course["history"]] == [
        {"event": "create", "at": "2026-03-01T09:00:00+00:00", "from": None, "to": "intake", "rule": None}
    ]

    again = ipt(*db, "course", "create", "--client", "CL-2", *LONDON, "--id", "C-7")
    assert "'C-7'" in error_line(again)
    rows = ok_json(ipt(*db, "course", "list", "--json"))
    assert [(r["id"], r["client"], r["protocol"]) for r in rows] == [("C-7", "CL-1", "ipt-b-8")]


def test_course_create_refuses_a_name_or_a_bad_zone_and_writes_nothing(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    line = error_line(ipt(*db, "course", "create", "--client", "Jane Doe", *LONDON))
    assert "Jane" not in line and "--client" in line and "pseudonymous" in line, "a client reference is never repeated"
    line = error_line(ipt(*db, "course", "create", "--client", "CL-1", *LONDON[:-1], "Europe/Lndon"))
    assert "--tz" in line and "Europe/Lndon" in line
    assert not (tmp_path / "x.sqlite").exists()


def test_ipt_db_environment_variable(ipt: RunIpt, tmp_path: Path) -> None:
    path = tmp_path / "env" / "courses.sqlite"
    env = {"IPT_DB": str(path)}
    course_id = ok(ipt(*CREATE, env=env)).strip()
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r["id"] for r in ok_json(ipt("course", "list", "--json", env=env))] == [course_id]
    line = error_line(ipt(*db_args(tmp_path), "course", "list", "--json", env=env))
    assert line.startswith("error: no database at "), "--db wins over IPT_DB"
    assert not list((tmp_path / "data").rglob("*.sqlite")), "the default database was not used"


# ---------------------------------------------------------------- course list, show


def test_course_list_table_json_and_filters(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    write_csv(
        tmp_path / "three.csv",
        "CL-1,T-1,ipt-16,2026-03-02,10:00,Europe/London,A1",
        "CL-2,T-2,ipt-b-8,2026-03-03,14:00,Europe/London,A2",
        "CL-3,T-1,ipt-a-12,2026-03-04,09:00,Europe/London,A3",
    )
    ok(ipt(*db, "import", "three.csv", "--now", "2026-03-01T09:00"))
    ok(ipt(*db, "course", "event", "A1", "complete_intake", "--at", "2026-03-02T11:00", "--now", "2026-03-02T11:00"))

    table = ok(ipt(*db, "course", "list"))
    assert "Courses (3)" in table
    for fragment in ("A1", "A2", "A3", "T-2", "ipt-b-8", "assessment", "intake"):
        assert fragment in table, fragment
    rows = ok_json(ipt(*db, "course", "list", "--json"))
    assert [(r["id"], r["therapist"], r["protocol"], r["state"]) for r in rows] == [
        ("A1", "T-1", "ipt-16", "assessment"),
        ("A2", "T-2", "ipt-b-8", "intake"),
        ("A3", "T-1", "ipt-a-12", "intake"),
    ]
    assert course_ids(ipt, db, "--state", "assessment") == ["A1"]
    assert course_ids(ipt, db, "--therapist", "T-1") == ["A1", "A3"]
    assert course_ids(ipt, db, "--state", "intake", "--therapist", "T-1") == ["A3"]
    assert "bogus" in usage_error(ipt(*db, "course", "list", "--state", "bogus"))


def test_course_show_table_json_and_unknown_ids(
    ipt: RunIpt, walked: tuple[str, str], walked_json: dict[str, Any]
) -> None:
    table = ok(ipt(*walked, "course", "show", "C1"))
    for fragment in ("C1", "intervention", "grief", "start_intervention", "Mon 2026-03-30 10:00 BST"):
        assert fragment in table, fragment
    assert ok_json(ipt(*walked, "course", "show", "C1", "--json")) == walked_json
    for args in (("course", "show", "NOPE"), ("course", "show", "NOPE", "--json"), ("plan", "NOPE")):
        line = error_line(ipt(*walked, *args))
        assert "'NOPE'" in line, line


# ---------------------------------------------------------------- course event


def test_course_event_walks_a_course_into_intervention(
    walk: tuple[Path, list[subprocess.CompletedProcess[str]]], walked_json: dict[str, Any]
) -> None:
    created, *events = walk[1]
    assert ok(created) == "C1\n"
    for run, (event, _, _, state, version) in zip(events[:-1], WALK, strict=False):
        out = ok(run)
        assert out.startswith("C1: ") and f"-> {state} (version {version})" in out, (event, out)
    course = walked_json
    assert (course["state"], course["version"], course["focus"], course["current_focus"]) == (
        "intervention", 7, ["grief"], "grief",
    )  # fmt: skip
    history = course["history"]
    assert [h["event"] for h in history] == ["create", *(step[0] for step in WALK)]
    assert [h["to"] for h in history] == ["intake", *(step[3] for step in WALK)]
    assert [h["from"] for h in history[1:]] == [h["to"] for h in history[:-1]]
    assert history[2]["at"] == "2026-03-02T10:55:00+00:00"
    assert history[2]["data"] == {"instrument": "phq9", "score": 18, "item9": 0}
    assert all(UTC_ISO.match(h["at"]) for h in history)
    assert [(m["instrument"], m["score"]) for m in course["measurements"]] == [("phq9", 18)]
    assert [s["status"] for s in course["sessions"][:3]] == ["held", "held", "planned"]


def test_course_event_refusals_write_nothing(ipt: RunIpt, walked: tuple[str, str]) -> None:
    before = ok(ipt(*walked, "course", "show", "C1", "--json")), ok(ipt(*walked, "plan", "C1", "--format", "json"))
    measure = ("record_measure", "--at", "2026-03-16T10:55", "--data")
    refusals: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("hold_session", "--expect-version", "6"), ("'C1'", "version 6", "version 7", "nothing was written")),
        ((*measure, "{not json"), ("--data", "JSON")),
        ((*measure, '{"instrument": "phq9", "score": 28, "item9": 0}'), ("score", "28")),
        ((*measure, '{"instrument": "phq9", "score": 9, "item9": 0, "mood": 3}'), ("mood",)),
        (("complete_intake",), ("complete_intake", "intervention")),
        (("frobnicate",), ("frobnicate",)),
        (("hold_session", "--at", "yesterday"), ("--at", "yesterday")),
    ]
    for args, fragments in refusals:
        line = error_line(ipt(*walked, "course", "event", "C1", *args, "--now", "2026-03-16T12:00"))
        for fragment in fragments:
            assert fragment in line, (args, line)
    after = ok(ipt(*walked, "course", "show", "C1", "--json")), ok(ipt(*walked, "plan", "C1", "--format", "json"))
    assert after == before

    # The current version is accepted; a naive --at is the course's wall clock (BST after March 29).
    event = ("hold_session", "--at", "2026-03-30T10:50", "--expect-version", "7", "--now", "2026-03-30T10:00")
    course = ok_json(ipt(*walked, "course", "event", "C1", *event, "--json"))
    assert course["version"] == 8
    last = course["history"][-1]
    assert (last["event"], last["at"]) == ("hold_session", "2026-03-30T09:50:00+00:00")


# ---------------------------------------------------------------- plan


def test_plan_table_and_json(ipt: RunIpt, walked: tuple[str, str]) -> None:
    table = ok(ipt(*walked, "plan", "C1"))
    for fragment in ("C1", "Sessions", "Reminders", "held", "planned", "pending", "session_reminder"):
        assert fragment in table, fragment
    plan = ok_json(ipt(*walked, "plan", "C1", "--format", "json"))
    assert (plan["course"], plan["state"]) == ("C1", "intervention")
    assert [s["status"] for s in plan["sessions"]] == ["held", "held"] + ["planned"] * (len(plan["sessions"]) - 2)
    assert all(s["status"] in SESSION_STATUSES and LOCAL_ISO.match(s["start"]) for s in plan["sessions"])
    reminders = plan["reminders"]
    assert reminders, "client reminders and therapist alerts are planned"
    for r in reminders:
        assert set(r) >= {"id", "course", "kind", "audience", "due", "session", "status"}, r
        assert r["course"] == "C1" and r["audience"] in {"client", "therapist"}, r
        # a held session's client reminders were cancelled when it was held (sessions 1 and 2)
        assert r["status"] == "pending" or (r["status"] == "cancelled" and r["session"] in {1, 2}), r
        assert UTC_ISO.match(r["due"]), r
    assert [utc(r["due"]) for r in reminders] == sorted(utc(r["due"]) for r in reminders)
    assert len({r["id"] for r in reminders}) == len(reminders)
    assert {"session_reminder", "termination_prep"} <= {r["kind"] for r in reminders}


def calendar_events(ics: str) -> tuple[Calendar, list[Any]]:
    cal = Calendar.from_ical(ics)
    return cal, list(cal.walk("VEVENT"))


def test_plan_ics_parses_back_with_the_course_zone_and_alarms(ipt: RunIpt, walked: tuple[str, str]) -> None:
    cancel = ("--at", "2026-03-10T09:00", "--now", "2026-03-10T09:00")
    ok(ipt(*walked, "course", "event", "C1", "cancel_session", *cancel))  # session 3, March 16
    plan = ok_json(ipt(*walked, "plan", "C1", "--format", "json"))
    ics = ok(ipt(*walked, "plan", "C1", "--format", "ics", "--now", "2026-03-10T12:00"))
    assert "CL-1" not in ics, "no client reference in a calendar file"
    cal, events = calendar_events(ics)
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/London"]
    assert len(events) == len(plan["sessions"])
    assert len({str(e["UID"]) for e in events}) == len(events)
    by_start = {utc(s["start"]): s for s in plan["sessions"]}
    offsets = set()
    alarmed = 0
    for event in events:
        start = event.decoded("DTSTART")
        session = by_start[start]  # compares instants
        assert event["DTSTART"].params["TZID"] == "Europe/London"
        assert (start.hour, start.minute, str(start.tzinfo)) == (10, 0, "Europe/London"), start
        offsets.add(start.utcoffset())
        assert event.decoded("DURATION") == timedelta(minutes=50)
        assert event.decoded("DTSTAMP") == utc("2026-03-10T12:00:00+00:00")
        assert str(event["STATUS"]) == ("CANCELLED" if session["status"] == "cancelled" else "CONFIRMED")
        triggers = sorted(alarm.decoded("TRIGGER") for alarm in event.walk("VALARM"))
        wanted = sorted(  # one alarm per instant
            {
                utc(r["due"])
                for r in plan["reminders"]
                if r["session"] == session["number"] and r["audience"] == "client" and r["status"] == "pending"
            }
        )
        assert triggers == (wanted if session["status"] == "planned" else []), session
        alarmed += bool(triggers)
    assert offsets == {timedelta(0), timedelta(hours=1)}, "the course crosses the March 29 change"
    assert [s["status"] for s in plan["sessions"][:3]] == ["held", "held", "cancelled"]
    assert alarmed >= 9


def test_plan_ics_alarms_say_their_trigger_is_a_date_time(ipt: RunIpt, walked: tuple[str, str]) -> None:
    _, events = calendar_events(ok(ipt(*walked, "plan", "C1", "--format", "ics")))
    alarms = [alarm for event in events for alarm in event.walk("VALARM")]
    assert alarms
    assert all(alarm["TRIGGER"].params.get("VALUE") == "DATE-TIME" for alarm in alarms)


# ---------------------------------------------------------------- reminders


def test_reminders_window_status_limit_and_withdraw(ipt: RunIpt, walked: tuple[str, str]) -> None:
    everything = ok_json(ipt(*walked, "plan", "C1", "--format", "json"))["reminders"]
    lo, hi = utc("2026-03-27T09:00:00+00:00"), utc("2026-04-06T09:00:00+00:00")
    assert {lo, hi} <= {utc(r["due"]) for r in everything}, "both window edges are due instants"
    window = ("--from", "2026-03-27T10:00+01:00", "--until", "2026-04-06T09:00")  # the same edges
    rows = ok_json(ipt(*walked, "reminders", "--course", "C1", *window, "--status", "pending", "--json"))
    assert {r["id"] for r in rows} == {r["id"] for r in everything if lo <= utc(r["due"]) < hi}
    assert utc(rows[0]["due"]) == lo and len(rows) >= 3
    assert [utc(r["due"]) for r in rows] == sorted(utc(r["due"]) for r in rows)
    assert all(r["status"] == "pending" and r["course"] == "C1" for r in rows)

    limited = ipt(*walked, "reminders", "--course", "C1", "--limit", "2", "--json")
    assert [r["due"] for r in ok_json(limited)] == [r["due"] for r in everything[:2]]
    assert len(limited.stderr.splitlines()) == 1 and limited.stderr.startswith("warning: ") and "2" in limited.stderr

    out = ok(ipt(*walked, "course", "event", "C1", "withdraw", "--at", "2026-03-12T12:00", "--now", "2026-03-12T12:00"))
    assert "withdrawn" in out
    withdrawn_at = utc("2026-03-12T12:00:00+00:00")
    future = {r["id"] for r in everything if utc(r["due"]) > withdrawn_at}
    cancelled = ok_json(ipt(*walked, "reminders", "--course", "C1", "--status", "cancelled", "--json"))
    assert future and future <= {r["id"] for r in cancelled}
    assert all(r["status"] == "cancelled" for r in cancelled)
    pending = ok_json(ipt(*walked, "reminders", "--course", "C1", "--status", "pending", "--json"))
    assert not [r for r in pending if utc(r["due"]) > withdrawn_at]


# ---------------------------------------------------------------- import

GOOD_ROWS = (
    "CL-1,T-1,ipt-16,2026-03-02,10:00,Europe/London,A1",
    "CL-2,T-2,ipt-b-8,2026-03-03,14:30,America/New_York,",
    "CL-3,T-1,ipt-a-12,2026-03-04,09:00,Europe/Paris,A3",
)
# line 2 is good, lines 3-8 are bad, line 9 is good
BAD_ROWS = {
    3: ("CL-2,T-1,ipt-16,2026-03-02,10:00,Mars/Olympus,", ("tz", "Mars/Olympus")),
    4: ("CL-3,T-1,ipt-16,2026-02-30,10:00,Europe/London,", ("start", "2026-02-30")),
    5: ("CL-4,T-1,ipt-16,2026-03-02,25:00,Europe/London,", ("time", "25:00")),
    6: ("CL-5,T-1,ipt-99,2026-03-02,10:00,Europe/London,", ("protocol", "ipt-99")),
    7: (",T-1,ipt-16,2026-03-02,10:00,Europe/London,", ("client", "empty")),
    8: ("Jane Doe,T-1,ipt-16,2026-03-02,10:00,Europe/London,", ("client", "pseudonymous")),  # never repeated
}
FIRST = "CL-1,T-1,ipt-16,2026-03-02,10:00,Europe/London,B1"
LAST = "CL-9,T-2,ipt-b-8,2026-03-03,11:00,Europe/London,B9"
DUPLICATE = "CL-8,T-1,ipt-16,2026-03-02,10:00,Europe/London,B1"
NO_TZ_HEADER = "client,therapist,protocol,start,time"


def assert_bad_rows(found: dict[int, str], expected: dict[int, tuple[str, ...]]) -> None:
    assert sorted(found) == sorted(expected), found
    for number, fragments in expected.items():
        for fragment in fragments:
            assert fragment in found[number], (fragment, found[number])


def test_import_a_good_csv(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    write_csv(tmp_path / "good.csv", *GOOD_ROWS)
    result = ipt(*db, "import", "good.csv", "--now", "2026-03-01T00:00")
    assert ok(result) == "imported 3 of 3 courses\n"
    assert not [c for c in BAR_CHARS if c in result.stderr], "no progress bar when stderr is not a terminal"
    rows = ok_json(ipt(*db, "course", "list", "--json"))
    assert {(r["client"], r["therapist"], r["protocol"], r["state"]) for r in rows} == {
        ("CL-1", "T-1", "ipt-16", "intake"),
        ("CL-2", "T-2", "ipt-b-8", "intake"),
        ("CL-3", "T-1", "ipt-a-12", "intake"),
    }
    assert {"A1", "A3"} < {r["id"] for r in rows}
    paris = ok_json(ipt(*db, "course", "show", "A3", "--json"))
    assert (paris["timezone"], paris["sessions"][0]["start"]) == ("Europe/Paris", "2026-03-04T09:00:00+01:00")


def test_import_bad_rows_import_nothing(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    write_csv(tmp_path / "bad.csv", FIRST, *(row for row, _ in BAD_ROWS.values()), LAST)
    result = ipt(*db, "import", "bad.csv", "--now", "2026-03-01T00:00")
    assert result.returncode == 1 and result.stdout == ""
    assert_bad_rows(bad_row_lines(result, "bad.csv"), {n: fragments for n, (_, fragments) in BAD_ROWS.items()})
    assert course_ids(ipt, db) == [], "all or nothing"


def test_import_skip_bad_imports_the_good_rows(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    write_csv(tmp_path / "bad.csv", FIRST, *(row for row, _ in BAD_ROWS.values()), DUPLICATE, LAST)
    result = ipt(*db, "import", "bad.csv", "--skip-bad", "--now", "2026-03-01T00:00")
    assert ok(result) == "imported 2 of 9 courses, 7 refused\n"
    expected = {n: fragments for n, (_, fragments) in BAD_ROWS.items()} | {9: ("id", "B1", "line 2")}
    assert_bad_rows(bad_row_lines(result, "bad.csv"), expected)
    assert course_ids(ipt, db) == ["B1", "B9"]


def test_import_reports_every_bad_row_along_with_a_duplicate_id(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    write_csv(tmp_path / "bad.csv", FIRST, *(row for row, _ in BAD_ROWS.values()), DUPLICATE, LAST)
    result = ipt(*db, "import", "bad.csv", "--now", "2026-03-01T00:00")
    assert result.returncode == 1 and result.stdout == ""
    expected = {n: fragments for n, (_, fragments) in BAD_ROWS.items()} | {9: ("id", "B1", "line 2")}
    assert_bad_rows(bad_row_lines(result, "bad.csv"), expected)


def test_import_reports_every_bad_row_along_with_a_short_row(ipt: RunIpt, tmp_path: Path) -> None:
    write_csv(tmp_path / "bad.csv", FIRST, "CL-2,T-1,ipt-16,2026-03-02,10:00", BAD_ROWS[3][0])
    result = ipt(*db_args(tmp_path), "import", "bad.csv")
    assert result.returncode == 1 and result.stdout == ""
    assert_bad_rows(bad_row_lines(result, "bad.csv"), {3: ("fields",), 4: BAD_ROWS[3][1]})


def test_import_a_bad_header_or_a_missing_file(ipt: RunIpt, tmp_path: Path) -> None:
    db = db_args(tmp_path)
    write_csv(tmp_path / "missing.csv", "CL-1,T-1,ipt-16,2026-03-02,10:00", header=NO_TZ_HEADER)
    write_csv(tmp_path / "unknown.csv", FIRST + ",3", header=HEADER + ",room")
    line = error_line(ipt(*db, "import", "missing.csv"))
    assert line.startswith("error: missing.csv:1: ") and "'tz'" in line, line
    line = error_line(ipt(*db, "import", "unknown.csv"))
    assert line.startswith("error: unknown.csv:1: ") and "'room'" in line, line
    line = error_line(ipt(*db, "import", "nowhere.csv"))
    assert "nowhere.csv" in line
    assert course_ids(ipt, db) == []


def test_import_skip_bad_does_not_excuse_a_bad_header(ipt: RunIpt, tmp_path: Path) -> None:
    write_csv(tmp_path / "missing.csv", "CL-1,T-1,ipt-16,2026-03-02,10:00", header=NO_TZ_HEADER)
    line = error_line(ipt(*db_args(tmp_path), "import", "missing.csv", "--skip-bad"))
    assert line.startswith("error: missing.csv:1: ") and "'tz'" in line, line


# ---------------------------------------------------------------- bad database, bad rules


def test_an_unreachable_database_is_one_line(ipt: RunIpt) -> None:
    url = "postgresql://nobody:s3cret@127.0.0.1:5999/x"
    for args in (("course", "list"), CREATE):
        line = error_line(ipt("--db", url, *args))
        assert "127.0.0.1:5999" in line and "database" in line, line
        assert "s3cret" not in line, "the password is never printed"


def test_a_bad_rules_directory_writes_nothing(ipt: RunIpt, tmp_path: Path, walked: tuple[str, str]) -> None:
    broken, other = tmp_path / "broken", tmp_path / "other"
    for directory in (broken, other):
        shutil.copytree(RULES, directory)
    text = (RULES / "ipt-16.yaml").read_text(encoding="utf-8")
    (broken / "ipt-16.yaml").write_text(text.replace("schema_version: 1", "schema_version: 2"), encoding="utf-8")
    (other / "ipt-16.yaml").write_text(text.replace('version: "1.0.0"', 'version: "1.1.0"'), encoding="utf-8")
    (other / "ipt-16-copy.yaml").write_text(text.replace('version: "1.0.0"', 'version: "1.1.0"'), encoding="utf-8")
    before = ok(ipt(*walked, "course", "show", "C1", "--json"))

    event = ("course", "event", "C1", "hold_session", "--at", "2026-03-16T10:50", "--now", "2026-03-16T11:00")
    prefix = f"error: {broken / 'ipt-16.yaml'}: schema_version (line "
    for args in (CREATE, event):
        line = error_line(ipt(*walked, "--rules", broken, *args))
        assert line.startswith(prefix), line
    twice = f"error: {other / 'ipt-16.yaml'}: version (line 5): protocol 'ipt-16' version '1.1.0' is also defined in "
    for args in (CREATE, event):  # two files with one (id, version)
        assert error_line(ipt(*walked, "--rules", other, *args)) == twice + str(other / "ipt-16-copy.yaml")

    assert course_ids(ipt, walked) == ["C1"]
    assert ok(ipt(*walked, "course", "show", "C1", "--json")) == before
