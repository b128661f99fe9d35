"""``ipt agenda`` and ``ipt slots`` (SPEC §9 "Seeing the calendar"): a therapist's sessions
across courses in start order, with moves, handovers, past and finished courses, across the
London spring change; and the weekly slots where a new course fits around their bookings
and the bank holidays."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from ..integration.conftest import db_url, postgres_unreachable, postgres_url  # noqa: F401
from .conftest import RULES, RunIpt, error_line, run_ipt
from .test_cli_calendar_views import readable, table_rows
from .test_cli_courses import ok, ok_json

NOW = ("--now", "2027-03-24T12:00")  # a Wednesday: "this week" is Mon 22 to Sun 28 March 2027


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, str]]:
    """Four London courses (clinic rules: Mon-Fri 08:00-18:00, English bank holidays):
    A (T-1, Mondays 10:00; session 2 moved to Thu 25 March 15:00), B (T-1, Wednesdays 14:00),
    C (T-2, Tuesdays 09:00, handed to T-1 from session 2) and W (T-1, Mondays 16:00; session
    1 held, then withdrawn)."""
    base = tmp_path_factory.mktemp("agenda")
    db = ("--db", str(base / "x.sqlite"))

    def run(*args: str) -> None:
        ok(run_ipt(*db, *args, cwd=base))

    courses = (("A", "T-1", "2027-03-15", "10:00"), ("B", "T-1", "2027-03-17", "14:00"),
               ("C", "T-2", "2027-03-16", "09:00"), ("W", "T-1", "2027-03-08", "16:00"))  # fmt: skip
    for cid, therapist, start, at in courses:
        run("course", "create", "--client", f"CL-{cid}", "--therapist", therapist, "--start", start, "--time", at,
            "--tz", "Europe/London", "--id", cid, "--now", "2027-03-01T09:00")  # fmt: skip

    def event(cid: str, name: str, at: str, data: str | None = None) -> None:
        run("course", "event", cid, name, "--at", at, "--now", at, *(("--data", data) if data else ()))

    event("W", "hold_session", "2027-03-08T16:55", '{"number": 1}')
    event("A", "reschedule_session", "2027-03-10T09:00", '{"number": 2, "start": "2027-03-25T15:00"}')
    event("C", "change_therapist", "2027-03-10T09:00", '{"therapist": "T-1", "from": 2}')
    event("W", "withdraw", "2027-03-12T09:00")
    return base, db


def entry(therapist: str, course: str, n: int, start: str, end: str, moved: str | None = None) -> dict[str, Any]:
    return {
        "therapist": therapist, "course": course, "group": None, "client": f"CL-{course}", "session": n,
        "phase": "assessment", "start": start, "end": end, "status": "planned", "original_start": moved,
    }  # fmt: skip


def test_agenda_json_is_this_weeks_sessions_of_the_therapist_in_start_order(
    clinic: tuple[Path, tuple[str, str]],
) -> None:
    base, db = clinic
    rows = ok_json(run_ipt(*db, "agenda", "--therapist", "T-1", "--format", "json", *NOW, cwd=base))
    assert rows == [
        entry("T-1", "C", 2, "2027-03-23T09:00:00+00:00", "2027-03-23T09:50:00+00:00"),  # handed to T-1
        entry("T-1", "B", 2, "2027-03-24T14:00:00+00:00", "2027-03-24T14:50:00+00:00"),
        entry("T-1", "A", 2, "2027-03-25T15:00:00+00:00", "2027-03-25T15:50:00+00:00", "2027-03-22T10:00:00+00:00"),
    ]
    assert ok_json(run_ipt(*db, "agenda", "--therapist", "T-1", "--json", *NOW, cwd=base)) == rows
    # The Sunday night before and the Monday after: the same week (the clinic's zone).
    for now in ("2027-03-22T00:00", "2027-03-28T22:59"):
        assert ok_json(run_ipt(*db, "agenda", "--therapist", "T-1", "--json", "--now", now, cwd=base)) == rows
    assert ok_json(run_ipt(*db, "agenda", "--therapist", "T-1", "--json", "--now", "2027-03-28T23:00", cwd=base))[0][
        "start"
    ].startswith("2027-03-30"), "23:00 UTC on Sunday 28 March is already Monday in London (BST)"


def test_agenda_keeps_past_sessions_with_their_status_and_each_handed_over_session_with_its_therapist(
    clinic: tuple[Path, tuple[str, str]],
) -> None:
    base, db = clinic
    rows = ok_json(run_ipt(*db, "agenda", "--from", "2027-03-08", "--until", "2027-03-21", "--json", *NOW, cwd=base))
    assert [(r["course"], r["session"], r["therapist"], r["status"], r["start"]) for r in rows] == [
        ("W", 1, "T-1", "held", "2027-03-08T16:00:00+00:00"),  # withdrawn: the held session stays, nothing planned
        ("A", 1, "T-1", "planned", "2027-03-15T10:00:00+00:00"),
        ("C", 1, "T-2", "planned", "2027-03-16T09:00:00+00:00"),  # before the handover
        ("B", 1, "T-1", "planned", "2027-03-17T14:00:00+00:00"),
    ]
    assert rows[0]["phase"] == "intake"
    # C is T-1's course now, yet its first session is still T-2's.
    mine = ok_json(run_ipt(*db, "agenda", "--therapist", "T-2", "--from", "2027-03-01", "--until", "2027-06-30",
                           "--json", *NOW, cwd=base))  # fmt: skip
    assert [(r["course"], r["session"], r["therapist"]) for r in mine] == [("C", 1, "T-2")]
    nobody = run_ipt(*db, "agenda", "--therapist", "T-3", "--json", *NOW, cwd=base)
    assert ok_json(nobody) == []


def test_agenda_table_gives_wall_times_across_the_spring_change_and_the_old_start_of_a_move(
    clinic: tuple[Path, tuple[str, str]],
) -> None:
    base, db = clinic
    args = ("agenda", "--therapist", "T-1", "--from", "2027-03-22", "--until", "2027-04-04", *NOW)
    text = ok(run_ipt(*db, *args, cwd=base))
    readable(text)
    title = "Agenda of T-1: Mon 2027-03-22 to Sun 2027-04-04"
    assert table_rows(text, title) == [
        ["Tue 2027-03-23 09:00 GMT", "09:50 GMT", "T-1", "C", "CL-C", "2", "assessment", "planned", ""],
        ["Wed 2027-03-24 14:00 GMT", "14:50 GMT", "T-1", "B", "CL-B", "2", "assessment", "planned", ""],
        ["Thu 2027-03-25 15:00 GMT", "15:50 GMT", "T-1", "A", "CL-A", "2", "assessment", "planned",
         "Mon 2027-03-22 10:00 GMT"],
        # Clocks go forward on Sunday 28 March; Easter Monday moves A to the Tuesday.
        ["Tue 2027-03-30 09:00 BST", "09:50 BST", "T-1", "C", "CL-C", "3", "assessment", "planned", ""],
        ["Tue 2027-03-30 10:00 BST", "10:50 BST", "T-1", "A", "CL-A", "3", "assessment", "planned", ""],
        ["Wed 2027-03-31 14:00 BST", "14:50 BST", "T-1", "B", "CL-B", "3", "assessment", "planned", ""],
    ]  # fmt: skip


def test_agenda_ics_holds_the_same_vevents_as_each_course_plan_export(clinic: tuple[Path, tuple[str, str]]) -> None:
    base, db = clinic
    args = ("agenda", "--therapist", "T-1", "--from", "2027-03-22", "--until", "2027-04-04", "--format", "ics", *NOW)
    feed = ok(run_ipt(*db, *args, cwd=base))
    assert "CL-" not in feed, "no client reference in a calendar feed"
    cal = Calendar.from_ical(feed)
    assert str(cal["X-WR-CALNAME"]) == "IPT agenda T-1"
    uids = [str(e["UID"]) for e in cal.walk("VEVENT")]
    assert uids == [f"{c}-session-{n}@ipt-workflow" for c, n in (("C", 2), ("B", 2), ("A", 2), ("C", 3), ("A", 3),
                                                                  ("B", 3))]  # fmt: skip
    for course in "ABC":
        plan = Calendar.from_ical(ok(run_ipt(*db, "plan", course, "--format", "ics", *NOW, cwd=base)))
        theirs = {str(e["UID"]): e.to_ical() for e in plan.walk("VEVENT")}
        for e in cal.walk("VEVENT"):
            if str(e["UID"]).startswith(f"{course}-"):
                assert e.to_ical() == theirs[str(e["UID"])], e["UID"]
    moved = next(e for e in cal.walk("VEVENT") if str(e["UID"]) == "A-session-2@ipt-workflow")
    assert moved.decoded("SEQUENCE") == 1
    assert moved.decoded("DTSTART").isoformat() == "2027-03-25T15:00:00+00:00"
    assert {str(v["TZID"]) for v in cal.walk("VTIMEZONE")} == {"Europe/London"}


def test_agenda_refuses_bad_input_with_one_line(clinic: tuple[Path, tuple[str, str]]) -> None:
    base, db = clinic
    for args, message in [
        (("--from", "2027-02-30"), "error: --from: '2027-02-30' is not a date (YYYY-MM-DD)"),
        (("--from", "2027-03-22", "--until", "2027-03-21"), "error: --until: 2027-03-21 is before --from 2027-03-22"),
        (
            ("--therapist", "T 1"),
            "error: --therapist: 'T 1' is not an id (1-64 letters, digits, '.', '_', ':' or "
            "'-', starting with a letter or digit)",
        ),
        (("--now", "yesterday"), "error: --now: 'yesterday' is not an ISO 8601 date-time"),
    ]:
        assert error_line(run_ipt(*db, "agenda", *args, cwd=base)) == message, args


# ---------------------------------------------------------------- slots

SLOTS = ("slots", "--therapist", "T-9", "--from", "2027-04-05", "--now", "2027-03-01T09:00")


def create(ipt: RunIpt, cid: str, start: str, at: str) -> None:
    ok(ipt("course", "create", "--client", "CL-9", "--therapist", "T-9", "--start", start, "--time", at, "--tz",
           "Europe/London", "--id", cid, "--now", "2027-03-01T09:00"))  # fmt: skip


def test_slots_avoid_the_therapists_bookings_also_after_holiday_moves(ipt: RunIpt) -> None:
    create(ipt, "MON", "2027-04-05", "10:00")  # Mondays 10:00-10:50
    mondays = (*SLOTS, "--weekdays", "mon", "--between", "09:00-12:00", "--step", "30m", "--json")
    # 09:30, 10:00 and 10:30 overlap the booked 10:00 session; the bank holidays of 3 and 31 May
    # move two sessions of a Monday course to the Tuesday (as they move MON's).
    assert ok_json(ipt(*mondays)) == [
        {"weekday": "mon", "time": "09:00", "first": "2027-04-05T09:00:00+01:00",
         "last": "2027-06-21T09:00:00+01:00", "moved": 2},
        {"weekday": "mon", "time": "11:00", "first": "2027-04-05T11:00:00+01:00",
         "last": "2027-06-21T11:00:00+01:00", "moved": 2},
    ]  # fmt: skip
    create(ipt, "TUE", "2027-05-04", "09:00")  # Tuesdays 09:00 from the day after the May holiday
    assert [s["time"] for s in ok_json(ipt(*mondays))] == ["11:00"], "Mon 09:00 moves onto Tue 4 May 09:00"
    text = ok(ipt(*mondays[:-1]))
    readable(text)
    assert table_rows(text, "Free slots of T-9 for ipt-16 (Europe/London)") == [
        ["mon", "11:00", "Mon 2027-04-05 11:00 BST", "Mon 2027-06-21 11:00 BST", "2"]
    ]


def test_slots_default_to_the_working_hours_and_days_earliest_first(ipt: RunIpt) -> None:
    create(ipt, "MON", "2027-04-05", "08:00")
    rows = ok_json(ipt(*SLOTS, "--limit", "3", "--json"))
    assert [(s["weekday"], s["time"], s["first"]) for s in rows] == [
        ("mon", "09:00", "2027-04-05T09:00:00+01:00"),  # 08:00 is booked, and so is 08:15-08:45
        ("mon", "09:15", "2027-04-05T09:15:00+01:00"),
        ("mon", "09:30", "2027-04-05T09:30:00+01:00"),
    ]
    late = ok_json(ipt(*SLOTS, "--weekdays", "fri", "--between", "16:00-18:00", "--step", "1h", "--json"))
    assert [(s["time"], s["first"], s["moved"]) for s in late] == [
        ("16:00", "2027-04-09T16:00:00+01:00", 0),
        ("17:00", "2027-04-09T17:00:00+01:00", 0),  # ends 17:50; 18:00 would end past the working hours
    ]
    tz = ok_json(ipt(*SLOTS, "--tz", "America/New_York", "--weekdays", "mon", "--limit", "1", "--json"))
    assert tz[0]["first"] == "2027-04-05T08:00:00-04:00", "working hours on the course's own wall clock"


def test_slots_refuse_bad_input_with_one_line(ipt: RunIpt) -> None:
    create(ipt, "MON", "2027-04-05", "10:00")
    for args, message in [
        (
            ("--weekdays", "mon,Thurs"),
            "error: --weekdays: 'Thurs' is not a weekday (mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            ("--weekdays", "sat"),
            "error: --weekdays: 'sat' is not one of the clinic's working days (mon, tue, wed, thu, fri)",
        ),
        (("--between", "10:00-24:00"), "error: --between: '24:00' is not a time (HH:MM, 00:00 to 23:59)"),
        (("--between", "12:00-10:00"), "error: --between: '12:00-10:00' ends before it starts"),
        (("--between", "10:00"), "error: --between: '10:00' is not a range of times (HH:MM-HH:MM)"),
        (
            ("--between", "07:00-09:00"),
            "error: --between: '07:00-09:00' is not within the clinic's working hours (08:00-18:00)",
        ),
        (
            ("--protocol", "ipt-99"),
            "error: unknown protocol 'ipt-99' (known: ipt-16, ipt-a-12, ipt-b-8, ipt-g-8, ipt-m)",
        ),
        (("--tz", "Mars/Olympus"), "error: --tz: 'Mars/Olympus' is not an IANA time zone (such as Europe/London)"),
        (("--step", "0m"), "error: --step: '0m' is not a step of 1m to 24h"),
        (("--step", "fast"), "error: --step: 'fast' is not a duration like 72h, 7d, 2w or 30m"),
    ]:
        assert error_line(ipt(*SLOTS, *args)) == message, args
    bad_from = ipt("slots", "--therapist", "T-9", "--from", "April")
    assert error_line(bad_from) == "error: --from: 'April' is not a date (YYYY-MM-DD)"


def test_slots_on_a_missing_database_is_one_line(ipt: RunIpt, tmp_path: Path) -> None:
    result: subprocess.CompletedProcess[str] = ipt("--db", str(tmp_path / "none.sqlite"), *SLOTS)
    assert error_line(result).startswith("error: no database at ")
    assert not (tmp_path / "none.sqlite").exists()


def test_agenda_and_slots_read_the_same_on_every_backend(
    db_url: str,  # noqa: F811 (the fixture)
    ipt: RunIpt,
) -> None:
    db = ("--db", db_url)
    for cid, therapist, start, at in (("A", "T-1", "2027-03-15", "10:00"), ("C", "T-2", "2027-03-16", "09:00")):
        ok(ipt(*db, "course", "create", "--client", f"CL-{cid}", "--therapist", therapist, "--start", start,
               "--time", at, "--tz", "Europe/London", "--id", cid, "--now", "2027-03-01T09:00"))  # fmt: skip
    ok(ipt(*db, "course", "event", "C", "change_therapist", "--at", "2027-03-10T09:00", "--now", "2027-03-10T09:00",
           "--data", '{"therapist": "T-1", "from": 2}'))  # fmt: skip
    window = ("--from", "2027-03-15", "--until", "2027-03-23", "--json", "--now", "2027-03-10T09:00")
    one = ok_json(ipt(*db, "agenda", "--therapist", "T-1", *window))
    assert [(r["course"], r["session"], r["start"]) for r in one] == [
        ("A", 1, "2027-03-15T10:00:00+00:00"),
        ("A", 2, "2027-03-22T10:00:00+00:00"),
        ("C", 2, "2027-03-23T09:00:00+00:00"),
    ]
    two = ok_json(ipt(*db, "agenda", "--therapist", "T-2", *window))
    assert [(r["course"], r["session"], r["therapist"]) for r in two] == [("C", 1, "T-2")]
    free = ok_json(ipt(*db, "slots", "--therapist", "T-1", "--from", "2027-03-15", "--weekdays", "tue", "--between",
                       "09:00-11:00", "--step", "30m", "--now", "2027-03-10T09:00", "--json"))  # fmt: skip
    # C is T-1's on Tuesdays 09:00 from its second session on; A is on Tuesday 30 March 10:00
    # (Easter Monday): no Tuesday slot between 09:00 and 11:00 is free all along
    assert free == []
    free = ok_json(ipt(*db, "slots", "--therapist", "T-1", "--from", "2027-03-15", "--weekdays", "wed", "--between",
                       "09:00-11:00", "--step", "30m", "--now", "2027-03-10T09:00", "--json"))  # fmt: skip
    assert [s["time"] for s in free] == ["09:00", "09:30", "10:00"]


def test_agenda_weeks_are_in_the_clinics_zone_read_from_the_rules(
    clinic: tuple[Path, tuple[str, str]], tmp_path: Path
) -> None:
    base, db = clinic
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    clinic_file = rules / "clinic.yaml"
    text = clinic_file.read_text()
    clinic_file.write_text(re.sub(r"(?m)^timezone: .*$", 'timezone: "America/New_York"  # the clinic', text))
    monday_night = ("--now", "2027-03-22T02:00")  # Monday in London, still Sunday in New York
    london = ok(run_ipt(*db, "agenda", *monday_night, cwd=base))
    assert "Agenda: Mon 2027-03-22 to Sun 2027-03-28" in london
    new_york = ok(run_ipt(*db, "--rules", rules, "agenda", *monday_night, cwd=base))
    assert "Agenda: Mon 2027-03-15 to Sun 2027-03-21" in new_york
    assert "Agenda: Tue 2027-03-16 to Mon 2027-03-22" in ok(run_ipt(*db, "agenda", "--until", "2027-03-22", cwd=base))
    clinic_file.write_text(re.sub(r"(?m)^timezone: .*$", "timezone: Mars/Base", text))
    line = error_line(run_ipt(*db, "--rules", rules, "agenda", cwd=base))
    assert line.startswith(f"error: {clinic_file}: timezone (line "), line


def test_slots_count_the_sessions_an_absence_of_the_therapist_moves(ipt: RunIpt) -> None:
    create(ipt, "MON", "2027-04-05", "10:00")
    fridays = (*SLOTS, "--weekdays", "fri", "--between", "16:00-17:00", "--step", "1h", "--json")
    assert [s["moved"] for s in ok_json(ipt(*fridays))] == [0]
    ok(ipt("therapist", "absence", "add", "T-9", "--from", "2027-04-16", "--until", "2027-04-16",
           "--now", "2027-03-01T09:00"))  # fmt: skip
    # Friday 16 April is the therapist's day off: that session of a Friday course moves to the
    # next working day (Monday 19 April, before the next Friday) and the slot counts it.
    assert [s["moved"] for s in ok_json(ipt(*fridays))] == [1]
