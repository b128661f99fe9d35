"""A group in the calendar views (SPEC §9, §10): ``ipt agenda`` lists a group session once
(``group`` set, ``course`` and ``client`` null) and the members' pre-group sessions as their
courses'; ``ipt group show --format ics`` writes one VEVENT per group session with stable
UIDs and no client reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from icalendar import Calendar

from .conftest import run_ipt
from .test_cli_courses import ok


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, str]]:
    """Group G1 (ipt-g-8, T-1 with cotherapist T-2, Mondays 10:00 from 19 April 2027) with
    three members whose pre-group sessions are on 12, 13 and 14 April; one individual course
    I of T-1 on Tuesdays 14:00."""
    base = tmp_path_factory.mktemp("groupcal")
    db = ("--db", str(base / "x.sqlite"))
    now = ("--now", "2027-04-01T09:00")
    ok(run_ipt(*db, "group", "create", "--protocol", "ipt-g-8", "--therapist", "T-1", "--cotherapist", "T-2",
               "--start", "2027-04-19", "--time", "10:00", "--tz", "Europe/London", "--id", "G1", "--min", "2",
               *now, cwd=base))  # fmt: skip
    for i, day in enumerate(("12", "13", "14"), start=1):
        ok(run_ipt(*db, "group", "add", "G1", "--client", f"CL-{i}", "--id", f"m{i}", "--pre",
                   f"2027-04-{day}T11:00", *now, cwd=base))  # fmt: skip
    ok(run_ipt(*db, "course", "create", "--client", "CL-I", "--therapist", "T-1", "--start", "2027-04-13",
               "--time", "14:00", "--tz", "Europe/London", "--id", "I", *now, cwd=base))  # fmt: skip
    return base, db


def _agenda(clinic: tuple[Path, tuple[str, str]], *args: str) -> list[dict[str, object]]:
    base, db = clinic
    return json.loads(ok(run_ipt(*db, "agenda", "--json", *args, cwd=base)))


def test_a_group_session_shows_once_and_pre_group_sessions_per_member(clinic: tuple[Path, tuple[str, str]]) -> None:
    rows = _agenda(clinic, "--therapist", "T-1", "--from", "2027-04-12", "--until", "2027-04-23")
    seen = [(r["start"], r["course"], r["group"], r["client"], r["session"]) for r in rows]
    assert seen == [
        ("2027-04-12T11:00:00+01:00", "m1", None, "CL-1", 1),
        ("2027-04-13T11:00:00+01:00", "m2", None, "CL-2", 1),
        ("2027-04-13T14:00:00+01:00", "I", None, "CL-I", 1),
        ("2027-04-14T11:00:00+01:00", "m3", None, "CL-3", 1),
        ("2027-04-19T10:00:00+01:00", None, "G1", None, 1),
        ("2027-04-20T14:00:00+01:00", "I", None, "CL-I", 2),
    ]
    group_row = rows[4]
    assert group_row["end"] == "2027-04-19T11:30:00+01:00"
    assert group_row["therapist"] == "T-1" and group_row["status"] == "planned"
    assert group_row["phase"] == "assessment"  # from a member's plan (pre-group + group 1)
    # the cotherapist gives it too; the whole clinic sees it once
    co = _agenda(clinic, "--therapist", "T-2", "--from", "2027-04-19")
    assert [(r["group"], r["session"], r["therapist"]) for r in co] == [("G1", 1, "T-2")]
    everyone = _agenda(clinic, "--from", "2027-04-19")
    assert [(r["course"], r["group"], r["session"]) for r in everyone] == [(None, "G1", 1), ("I", None, 2)]


def test_agenda_table_names_the_group(clinic: tuple[Path, tuple[str, str]]) -> None:
    base, db = clinic
    out = ok(run_ipt(*db, "agenda", "--therapist", "T-1", "--from", "2027-04-19", cwd=base))
    assert "group G1" in out and "Mon 2027-04-19 10:00 BST" in out
    assert "CL-1" not in out  # no member is listed for a group session


def test_group_ics_one_vevent_per_group_session_without_clients(clinic: tuple[Path, tuple[str, str]]) -> None:
    base, db = clinic
    first = ok(run_ipt(*db, "group", "show", "G1", "--format", "ics", "--now", "2027-04-02T09:00", cwd=base))
    cal = Calendar.from_ical(first)
    events = [c for c in cal.walk("VEVENT")]
    assert [str(e["uid"]) for e in events] == [f"G1-session-{n}@ipt-workflow" for n in range(1, 9)]
    assert all(int(e["sequence"]) == 0 for e in events)
    assert str(events[0]["summary"]) == "IPT group session 1"
    assert events[0].decoded("dtstart").isoformat() == "2027-04-19T10:00:00+01:00"
    assert "CL-" not in first and "m1" not in first and "VALARM" not in first
    # the group moves session 2: same UID, SEQUENCE 1, the agenda's ICS shows it once
    ok(run_ipt(*db, "group", "event", "G1", "reschedule_session", "--data",
               '{"number": 2, "start": "2027-04-27T10:00"}', "--now", "2027-04-02T10:00", cwd=base))  # fmt: skip
    again = Calendar.from_ical(
        ok(run_ipt(*db, "group", "show", "G1", "--format", "ics", "--now", "2027-04-02T11:00", cwd=base))
    )
    moved = next(e for e in again.walk("VEVENT") if str(e["uid"]) == "G1-session-2@ipt-workflow")
    assert int(moved["sequence"]) == 1
    assert moved.decoded("dtstart").isoformat() == "2027-04-27T10:00:00+01:00"
    feed = ok(run_ipt(*db, "agenda", "--from", "2027-04-26", "--format", "ics", "--now", "2027-04-02T11:00",
                      cwd=base))  # fmt: skip
    uids = [str(e["uid"]) for e in Calendar.from_ical(feed).walk("VEVENT")]
    assert uids.count("G1-session-2@ipt-workflow") == 1 and not any(u.startswith("m") for u in uids)
