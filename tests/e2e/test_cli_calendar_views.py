"""Seeing the calendar (SPEC §9, issue 10 item 7): human tables show local wall time with its
weekday and zone abbreviation, JSON stays ISO 8601, and successive ICS exports update a
calendar app by UID and SEQUENCE instead of duplicating sessions."""

from __future__ import annotations

import re
import subprocess
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import recurring_ical_events
from icalendar import Calendar

from ..integration.conftest import db_url, postgres_unreachable, postgres_url  # noqa: F401
from .conftest import RunIpt, run_ipt
from .test_cli_courses import ok, ok_json, write_csv

ISO_IN_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
WIDTH = 200  # the conftest's COLUMNS


def table_rows(text: str, title: str) -> list[list[str]]:
    """The cells of each body row of the rich table titled ``title`` in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = []
    for line in lines[start + 4 :]:
        if not line.startswith("│"):
            break
        rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def readable(text: str) -> None:
    """No ISO 8601 instant and nothing past the terminal's width in a human table."""
    assert not ISO_IN_TEXT.search(text), text
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert "…" not in text, "a cell was cut"


# ---------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def two_zones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, str]]:
    """A London course across the March change (GMT, then BST) and a Lord Howe course across
    the April change (+11, then +1030: a half-hour shift and numeric abbreviations)."""
    base = tmp_path_factory.mktemp("zones")
    db = ("--db", str(base / "x.sqlite"))
    london = ("--start", "2027-01-11", "--time", "10:00", "--tz", "Europe/London", "--id", "LON")
    howe = ("--start", "2027-03-22", "--time", "10:00", "--tz", "Australia/Lord_Howe", "--id", "LHI")
    for args in (london, howe):
        ok(run_ipt(*db, "course", "create", "--client", "CL-1", *args, "--now", "2027-01-01T09:00", cwd=base))
    return base, db


def test_course_show_gives_sessions_and_history_on_the_course_wall_clock(
    two_zones: tuple[Path, tuple[str, str]],
) -> None:
    base, db = two_zones
    text = ok(run_ipt(*db, "course", "show", "LON", cwd=base))
    readable(text)
    sessions = {row[0]: row[2] for row in table_rows(text, "Sessions")}
    assert sessions["1"] == "Mon 2027-01-11 10:00 GMT"
    assert sessions["11"] == "Mon 2027-03-22 10:00 GMT"
    assert sessions["12"] == "Tue 2027-03-30 10:00 BST", "Easter Monday moves it, after the change"
    assert table_rows(text, "History")[0][:2] == ["Fri 2027-01-01 09:00 GMT", "create"]

    text = ok(run_ipt(*db, "course", "show", "LHI", cwd=base))
    readable(text)
    starts = [row[2] for row in table_rows(text, "Sessions")]
    assert starts[:3] == ["Mon 2027-03-22 10:00 +11", "Tue 2027-03-30 10:00 +11", "Mon 2027-04-05 10:00 +1030"]
    assert table_rows(text, "History")[0][0] == "Fri 2027-01-01 20:00 +11"


def test_plan_table_gives_reminders_in_the_course_zone_and_json_stays_iso(
    two_zones: tuple[Path, tuple[str, str]],
) -> None:
    base, db = two_zones
    text = ok(run_ipt(*db, "plan", "LHI", cwd=base))
    readable(text)
    assert [row[2] for row in table_rows(text, "Sessions")][2] == "Mon 2027-04-05 10:00 +1030"
    reminders = table_rows(text, "Reminders")
    assert reminders[0][:6] == ["Fri 2027-03-19 10:00 +11", "session_reminder", "client", "LHI", "1", "pending"]
    assert any(row[0] == "Sun 2027-04-04 10:00 +1030" and row[4] == "3" for row in reminders), reminders
    plan = ok_json(run_ipt(*db, "plan", "LHI", "--format", "json", cwd=base))
    assert plan["sessions"][2]["start"] == "2027-04-05T10:00:00+10:30"
    assert plan["reminders"][0]["due"] == "2027-03-18T23:00:00+00:00"


def test_reminders_table_gives_each_reminder_in_its_own_course_zone(two_zones: tuple[Path, tuple[str, str]]) -> None:
    base, db = two_zones
    text = ok(run_ipt(*db, "reminders", "--until", "2027-04-10", cwd=base))
    readable(text)
    rows = table_rows(text, "Reminders")
    zones = {"LON": {"GMT", "BST"}, "LHI": {"+11", "+1030"}}
    assert {row[3] for row in rows} == {"LON", "LHI"}
    for row in rows:
        assert re.fullmatch(r"[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d \S+", row[0]), row
        assert row[0].split()[-1] in zones[row[3]], row
    assert rows[0][:5] == ["Fri 2027-01-08 10:00 GMT", "session_reminder", "client", "LON", "1"]
    assert {row[0].split()[-1] for row in rows} == {"GMT", "BST", "+11", "+1030"}
    assert ok_json(run_ipt(*db, "reminders", "--json", cwd=base))[0]["due"] == "2027-01-08T10:00:00+00:00"


def test_reminders_table_fits_an_80_column_terminal(two_zones: tuple[Path, tuple[str, str]], tmp_path: Path) -> None:
    base, db = two_zones
    mine = ("--db", str(tmp_path / "x.sqlite"))
    london = ("--start", "2027-01-11", "--tz", "Europe/London")
    howe = ("--start", "2027-03-22", "--tz", "Australia/Lord_Howe")
    for args in (london, howe):
        ok(run_ipt(*mine, "course", "create", "--client", "CL-1", "--time", "10:00", *args, "--now", "2027-01-01T09:00",
                   cwd=base))  # fmt: skip
    wide = ok(run_ipt(*mine, "reminders", "--until", "2027-04-10", cwd=base))
    assert max(len(line) for line in wide.splitlines()) > 80  # generated course ids and reminder ids
    narrow_env = {"COLUMNS": "80"}
    documents = ok_json(run_ipt(*mine, "reminders", "--until", "2027-04-10", "--json", cwd=base, env=narrow_env))
    assert all(d["id"].startswith("rem_") for d in documents)  # JSON keeps the full ids
    for where in (mine, db):
        text = ok(run_ipt(*where, "reminders", "--until", "2027-04-10", cwd=base, env=narrow_env))
        assert max(len(line) for line in text.splitlines()) <= 80, text
        assert "…" not in text and "rem_" not in text and not ISO_IN_TEXT.search(text), text
        rows = [row for row in table_rows(text, "Reminders") if row[0]]  # a long course id wraps onto a second line
        assert len(rows) == len(ok_json(run_ipt(*where, "reminders", "--until", "2027-04-10", "--json", cwd=base)))
        for row in rows:
            assert re.fullmatch(r"[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d (GMT|BST|\+11|\+1030)", row[0]), row
        assert rows[0][:2] == ["Fri 2027-01-08 10:00 GMT", "session_reminder"]
    # one course: the title names it instead of a column
    text = ok(run_ipt(*db, "reminders", "--course", "LHI", cwd=base, env=narrow_env))
    assert max(len(line) for line in text.splitlines()) <= 80, text
    # (the longest kind, attendance_unrecorded, leaves no room for the audience, which the kind implies)
    assert table_rows(text, "Reminders of course LHI")[0] == ["Fri 2027-03-19 10:00 +11", "session_reminder", "1",
                                                               "pending"]  # fmt: skip
    # wide terminals keep the reminder ids
    assert all(row[6].startswith("rem_") for row in table_rows(ok(run_ipt(*db, "reminders", cwd=base)), "Reminders"))


def test_simulate_tables_use_the_zone_given_with_a_numeric_abbreviation(ipt: RunIpt) -> None:
    args = ("simulate", "--protocol", "ipt-16", "--start", "2027-01-11", "--time", "10:00")
    text = ok(ipt(*args, "--tz", "America/Sao_Paulo", "--now", "2027-01-01T00:00"))
    readable(text)
    assert table_rows(text, "Sessions")[0][2] == "Mon 2027-01-11 10:00 -03"
    assert table_rows(text, "Reminders")[0][:3] == ["Fri 2027-01-08 10:00 -03", "session_reminder", "client"]
    assert table_rows(text, "History")[0][:2] == ["Mon 2027-01-11 00:00 -03", "create"]  # the start date at midnight
    data = ok_json(ipt(*args, "--tz", "America/Sao_Paulo", "--now", "2027-01-01T00:00", "--json"))
    assert data["sessions"][0]["start"] == "2027-01-11T10:00:00-03:00"


# ---------------------------------------------------------------- ICS

EXPORTS_AFTER = ("created", "first held, paused", "resumed (sessions moved)", "session 2 cancelled", "withdrawn")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[Calendar]:
    """The ICS export of one London course after each step of ``EXPORTS_AFTER``."""
    base = tmp_path_factory.mktemp("ics")
    db = ("--db", str(base / "x.sqlite"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_ipt(*db, *args, cwd=base)

    def event(name: str, at: str, *extra: str) -> None:
        ok(run("course", "event", "C1", name, "--at", at, "--now", at, *extra))

    def export(now: str) -> Calendar:
        return Calendar.from_ical(ok(run("plan", "C1", "--format", "ics", "--now", now)))

    create = ("--start", "2027-01-11", "--time", "10:00", "--tz", "Europe/London", "--id", "C1")
    ok(run("course", "create", "--client", "CL-1", *create, "--now", "2027-01-01T09:00"))
    out = [export("2027-01-01T10:00")]
    event("hold_session", "2027-01-11T10:55")
    event("pause", "2027-01-12T09:00")
    out.append(export("2027-01-12T10:00"))
    event("resume", "2027-01-31T09:00")  # the Mondays of January 18 and 25 are skipped
    out.append(export("2027-01-31T10:00"))
    event("cancel_session", "2027-01-31T12:00", "--data", '{"number": 2}')
    out.append(export("2027-01-31T13:00"))
    event("withdraw", "2027-02-05T09:00")  # session 3 (Feb 8) and every later one are off
    out.append(export("2027-02-05T10:00"))
    return out


def by_uid(cal: Calendar) -> dict[str, Any]:
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_reimported_exports_update_a_calendar_app_instead_of_duplicating(exports: list[Calendar]) -> None:
    # The "calendar app": every export imported in turn into one calendar; recurring-ical-events
    # keeps, per UID, the VEVENT with the highest SEQUENCE (the first one on a tie).
    app = Calendar()
    app.add_component(exports[-1].walk("VTIMEZONE")[0])
    for cal in exports:
        for e in cal.walk("VEVENT"):
            app.add_component(e)
    shown = recurring_ical_events.of(app).between(date(2026, 12, 1), date(2028, 1, 1))
    uids = [str(e["UID"]) for e in shown]
    assert len(uids) == len(set(uids)), "each session appears once"
    latest = by_uid(exports[-1])
    assert set(uids) == set(latest)
    first = by_uid(exports[0])
    for e in shown:
        want = latest[str(e["UID"])]
        assert e.decoded("DTSTART") == want.decoded("DTSTART"), e["UID"]
        assert str(e["STATUS"]) == str(want["STATUS"]), e["UID"]
    session = {str(e["UID"]): e for e in shown}
    two, three = session["C1-session-2@ipt-workflow"], session["C1-session-3@ipt-workflow"]
    assert str(two["STATUS"]) == "CANCELLED"
    assert two.decoded("DTSTART") == datetime.fromisoformat("2027-02-01T10:00+00:00")
    assert first["C1-session-2@ipt-workflow"].decoded("DTSTART") == datetime.fromisoformat("2027-01-18T10:00+00:00")
    assert str(three["STATUS"]) == "CANCELLED", "the withdrawal took it off"
    assert three.decoded("DTSTART") == datetime.fromisoformat("2027-02-08T10:00Z")
    assert three["X-IPT-STATUS"] == "cancelled"
    assert str(session["C1-session-1@ipt-workflow"]["STATUS"]) == "CONFIRMED"
    assert {str(e["STATUS"]) for u, e in session.items() if u not in {"C1-session-1@ipt-workflow"}} == {"CANCELLED"}


def test_sequence_and_last_modified_never_go_back_and_grow_with_each_change(exports: list[Calendar]) -> None:
    changed = 0
    for before, after, step in zip(exports[:-1], exports[1:], EXPORTS_AFTER[1:], strict=True):
        old, new = by_uid(before), by_uid(after)
        assert set(old) <= set(new), step
        for uid, e in old.items():
            n = new[uid]
            assert n.decoded("SEQUENCE") >= e.decoded("SEQUENCE"), (step, uid)
            assert n.decoded("LAST-MODIFIED") >= e.decoded("LAST-MODIFIED"), (step, uid)
            if n.decoded("DTSTART") != e.decoded("DTSTART") or str(n["STATUS"]) != str(e["STATUS"]):
                changed += 1
                assert n.decoded("SEQUENCE") > e.decoded("SEQUENCE"), (step, uid)
                assert n.decoded("LAST-MODIFIED") > e.decoded("LAST-MODIFIED"), (step, uid)
    assert changed >= 12, "the resume moved every planned session and the cancel one more"
    final = by_uid(exports[-2])
    held = final["C1-session-1@ipt-workflow"]
    assert held.decoded("SEQUENCE") == 1, "the hold, then nothing changes a held session"
    assert held.decoded("LAST-MODIFIED") == datetime.fromisoformat("2027-01-11T10:55Z")
    cancelled = final["C1-session-2@ipt-workflow"]
    assert cancelled.decoded("SEQUENCE") == 4 and str(cancelled["STATUS"]) == "CANCELLED"
    assert cancelled.decoded("LAST-MODIFIED") == datetime.fromisoformat("2027-01-31T12:00Z")
    fresh = by_uid(exports[0])["C1-session-1@ipt-workflow"]
    assert fresh.decoded("SEQUENCE") == 0
    assert fresh.decoded("LAST-MODIFIED") == datetime.fromisoformat("2027-01-01T09:00Z"), "created_at"


def test_two_reminders_at_one_instant_give_one_valarm(exports: list[Calendar], tmp_path: Path) -> None:
    first = by_uid(exports[0])["C1-session-1@ipt-workflow"]
    triggers = [alarm.decoded("TRIGGER") for alarm in first.walk("VALARM")]
    # session_reminder 72 h and 24 h before, and measure_due 24 h before: two instants
    assert triggers == [datetime.fromisoformat("2027-01-08T10:00Z"), datetime.fromisoformat("2027-01-10T10:00Z")]
    for cal in exports:
        for e in cal.walk("VEVENT"):
            instants = [alarm.decoded("TRIGGER") for alarm in e.walk("VALARM")]
            assert len(instants) == len(set(instants)), e["UID"]


def test_reminders_table_finds_the_zone_of_every_course_on_every_backend(
    db_url: str,  # noqa: F811 (the fixture)
    ipt: RunIpt,
    tmp_path: Path,
) -> None:
    # 501 courses (one therapist each: no clashes): the zones are read 500 ids at a time
    rows = [
        f"CL-{i},T-{i},ipt-16,2027-01-11,10:00,{'Europe/London' if i % 2 else 'Australia/Lord_Howe'},C{i:03d}"
        for i in range(501)
    ]
    ok(ipt("--db", db_url, "import", write_csv(tmp_path / "courses.csv", *rows), "--now", "2027-01-01T09:00"))
    text = ok(ipt("--db", db_url, "reminders", "--until", "2027-01-09", "--limit", "5000"))
    readable(text)
    shown = {row[3]: row[0] for row in table_rows(text, "Reminders")}
    assert len(shown) == 501
    for course, due in shown.items():
        assert due == ("Fri 2027-01-08 10:00 GMT" if int(course[1:]) % 2 else "Fri 2027-01-08 10:00 +11"), course
