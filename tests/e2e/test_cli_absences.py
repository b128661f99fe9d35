"""Therapists' absences (SPEC §9, issue 10 item 4): ``ipt therapist absence add|list|remove``.
The therapist's planned sessions inside an absence move as for a clinic closure (the next
working day at the same time when the therapist is free then, else the next free working day,
or skipped by ``holiday_policy``), each moved session's client gets a ``session_moved`` notice
carrying the old and new local start, and removing the absence moves them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunIpt, error_line
from .test_cli_courses import ok, ok_json

NOW = "2027-01-10T09:00"  # a Sunday; sessions on Mondays from 2027-01-04 (Europe/London, GMT)


def create(ipt: RunIpt, cid: str, start: str, time: str = "10:00", therapist: str = "T-01", *extra: str) -> None:
    ok(ipt("course", "create", "--id", cid, "--client", f"CL-{cid}", "--therapist", therapist, "--start", start,
           "--time", time, "--tz", "Europe/London", "--now", "2027-01-01T09:00", *extra))  # fmt: skip


def starts(ipt: RunIpt, cid: str, first: int = 1, last: int = 5) -> dict[int, tuple[str, str | None]]:
    sessions = ok_json(ipt("plan", cid, "--json"))["sessions"]
    return {s["number"]: (s["start"], s["original_start"]) for s in sessions if first <= s["number"] <= last}


def notices(ipt: RunIpt, cid: str) -> list[dict[str, Any]]:
    return [r for r in ok_json(ipt("reminders", "--course", cid, "--json")) if r["kind"] == "session_moved"]


def alerts(ipt: RunIpt, cid: str, kind: str = "schedule_conflict") -> list[dict[str, Any]]:
    return [r for r in ok_json(ipt("reminders", "--course", cid, "--json")) if r["kind"] == kind]


def add(ipt: RunIpt, *args: str, now: str = NOW) -> str:
    result = ipt("therapist", "absence", "add", *args, "--now", now)
    out = ok(result)
    assert out.count("\n") == 1 and out.startswith("abs_"), out
    return out.strip()


def test_a_session_inside_an_absence_moves_to_the_next_working_day_and_the_client_is_told(ipt: RunIpt) -> None:
    create(ipt, "c1", "2027-01-04")
    absence = add(ipt, "T-01", "--from", "2027-01-18", "--until", "2027-01-18", "--reason", "training")
    assert starts(ipt, "c1", 2, 4) == {
        2: ("2027-01-11T10:00:00+00:00", None),
        3: ("2027-01-19T10:00:00+00:00", "2027-01-18T10:00:00+00:00"),  # Mon -> Tue, same time
        4: ("2027-01-25T10:00:00+00:00", None),
    }
    [told] = notices(ipt, "c1")
    assert told["session"] == 3 and told["audience"] == "client" and told["status"] == "pending"
    assert told["due"] == "2027-01-10T09:00:00+00:00"
    assert told["detail"] == {"start": "2027-01-19T10:00:00+00:00", "old_start": "2027-01-18T10:00:00+00:00"}
    # The old session's reminders are cancelled; the new time has its own.
    pending = [r for r in ok_json(ipt("reminders", "--course", "c1", "--status", "pending", "--json"))]
    dues = {r["due"] for r in pending if r["kind"] == "session_reminder" and r["session"] == 3}
    assert dues == {"2027-01-16T10:00:00+00:00", "2027-01-18T10:00:00+00:00"}  # 72h and 24h before Tue 10:00
    listed = ok_json(ipt("therapist", "absence", "list", "T-01", "--json"))
    want = {"id": absence, "therapist": "T-01", "from": "2027-01-18", "until": "2027-01-18", "reason": "training",
            "created_at": "2027-01-10T09:00:00+00:00"}  # fmt: skip
    assert listed == [want]
    history = ok_json(ipt("course", "show", "c1", "--json"))["history"]
    assert history[-1]["event"] == "therapist_absence"
    assert history[-1]["data"] == {"absence": absence, "therapist": "T-01", "from": "2027-01-18",
                                   "until": "2027-01-18", "change": "added"}  # fmt: skip
    table = ok(ipt("therapist", "absence", "list"))
    assert "Mon 2027-01-18" in table and absence in table


def test_the_daemon_line_of_a_move_notice_carries_the_old_and_new_start(ipt: RunIpt) -> None:
    create(ipt, "c1", "2027-01-04")
    add(ipt, "T-01", "--from", "2027-01-18", "--until", "2027-01-18")
    lines = [json.loads(x) for x in ok(ipt("daemon", "--once", "--now", "2027-01-10T09:00:30")).splitlines()]
    [line] = [x for x in lines if x["kind"] == "session_moved"]
    assert line["session"] == 3 and line["audience"] == "client" and line["type"] == "reminder"
    assert line["start"] == "2027-01-19T10:00:00+00:00" and line["old_start"] == "2027-01-18T10:00:00+00:00"


def test_a_moved_session_goes_where_the_therapist_is_free_else_alerts(ipt: RunIpt) -> None:
    create(ipt, "mon", "2027-01-04")
    create(ipt, "tue", "2027-01-05")
    add(ipt, "T-01", "--from", "2027-01-18", "--until", "2027-01-18")
    # Tuesday 10:00 is taken by the other course: Wednesday, the next free working day.
    assert starts(ipt, "mon", 3, 3) == {3: ("2027-01-20T10:00:00+00:00", "2027-01-18T10:00:00+00:00")}
    assert alerts(ipt, "mon") == [] and alerts(ipt, "tue") == []
    assert notices(ipt, "mon")[0]["detail"]["start"] == "2027-01-20T10:00:00+00:00"


def test_with_no_free_working_day_before_the_next_session_the_clash_is_booked_with_an_alert(ipt: RunIpt) -> None:
    create(ipt, "mon", "2027-01-04")
    for cid, day in (("tue", "2027-01-05"), ("wed", "2027-01-06"), ("thu", "2027-01-07"), ("fri", "2027-01-08")):
        create(ipt, cid, day)
    add(ipt, "T-01", "--from", "2027-01-18", "--until", "2027-01-18")
    assert starts(ipt, "mon", 3, 3) == {3: ("2027-01-19T10:00:00+00:00", "2027-01-18T10:00:00+00:00")}
    [alert] = alerts(ipt, "mon")
    assert alert["session"] == 3 and alert["rule"] == "clash:tue#3" and alert["audience"] == "therapist"


def test_removing_the_absence_moves_the_sessions_back_and_supersedes_the_notice(ipt: RunIpt) -> None:
    create(ipt, "mon", "2027-01-04")
    create(ipt, "tue", "2027-01-05")
    absence = add(ipt, "T-01", "--from", "2027-01-18", "--until", "2027-01-18")
    result = ipt("therapist", "absence", "remove", absence, "--now", "2027-01-11T12:00")
    assert ok(result).strip() == absence
    assert "1 planned session(s) of 1 course(s) moved back" in result.stderr
    assert starts(ipt, "mon", 3, 3) == {3: ("2027-01-18T10:00:00+00:00", None)}
    told = {(r["status"], r["detail"]["start"], r["detail"]["old_start"]) for r in notices(ipt, "mon")}
    assert told == {
        ("cancelled", "2027-01-20T10:00:00+00:00", "2027-01-18T10:00:00+00:00"),  # the stale notice, never sent
        ("pending", "2027-01-18T10:00:00+00:00", "2027-01-20T10:00:00+00:00"),
    }
    assert ok_json(ipt("therapist", "absence", "list", "--json")) == []


def test_a_long_absence_with_the_skip_policy_shifts_the_rest_of_the_plan(ipt: RunIpt, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    clinic = (Path(__file__).resolve().parents[2] / "rules" / "clinic.yaml").read_text()
    (rules / "clinic.yaml").write_text(clinic.replace("holiday_policy: next_working_day", "holiday_policy: skip"))
    for p in (Path(__file__).resolve().parents[2] / "rules").glob("*.yaml"):
        if p.name != "clinic.yaml":
            (rules / p.name).write_text(p.read_text())
    r = ("--rules", str(rules))
    ok(ipt(*r, "course", "create", "--id", "c1", "--client", "CL-1", "--therapist", "T-01", "--start", "2027-01-04",
           "--time", "10:00", "--tz", "Europe/London", "--now", "2027-01-01T09:00"))  # fmt: skip
    ok(ipt(*r, "therapist", "absence", "add", "T-01", "--from", "2027-01-18", "--until", "2027-01-29", "--now", NOW))
    got = {n: s for n, (s, _) in starts(lambda *a: ipt(*r, *a), "c1", 2, 4).items()}
    assert got == {2: "2027-01-11T10:00:00+00:00", 3: "2027-02-01T10:00:00+00:00", 4: "2027-02-08T10:00:00+00:00"}


def test_courses_created_or_handed_over_later_keep_out_of_the_absence(ipt: RunIpt, tmp_path: Path) -> None:
    add(ipt, "T-02", "--from", "2027-01-18", "--until", "2027-01-18")
    create(ipt, "new", "2027-01-04", "10:00", "T-02")
    assert starts(ipt, "new", 3, 3)[3][0] == "2027-01-19T10:00:00+00:00"
    (tmp_path / "c.csv").write_text(
        "id,client,therapist,protocol,start,time,tz\nimp,CL-9,T-02,ipt-16,2027-01-04,12:00,Europe/London\n"
    )
    ok(ipt("import", tmp_path / "c.csv", "--now", "2027-01-01T09:00"))
    assert starts(ipt, "imp", 3, 3)[3][0] == "2027-01-19T12:00:00+00:00"
    create(ipt, "handed", "2027-01-04", "14:00", "T-01")
    ok(ipt("course", "event", "handed", "change_therapist", "--data", '{"therapist": "T-02", "from": 2}',
           "--at", "2027-01-05T09:00", "--now", "2027-01-05T09:00"))  # fmt: skip
    assert starts(ipt, "handed", 3, 3)[3][0] == "2027-01-19T14:00:00+00:00"


def test_a_session_already_past_moves_without_a_notice(ipt: RunIpt) -> None:
    create(ipt, "c1", "2027-01-04")
    add(ipt, "T-01", "--from", "2027-01-04", "--until", "2027-01-04", now="2027-01-05T12:00")
    assert starts(ipt, "c1", 1, 1)[1][0] == "2027-01-05T10:00:00+00:00"  # still unrecorded, now past
    assert notices(ipt, "c1") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("T-01", "--from", "2027-01-18", "--until", "2027-01-11"),
         "error: --until: 2027-01-11 is before --from 2027-01-18"),
        (("T-01", "--from", "2027-02-30", "--until", "2027-03-01"),
         "error: --from: '2027-02-30' is not a date (YYYY-MM-DD)"),
        (("T 01", "--from", "2027-01-18", "--until", "2027-01-18"), "error: ID: 'T 01' is not an id"),
        (("T-01", "--from", "2027-01-18", "--until", "2027-01-18", "--reason", "x" * 201),
         "error: --reason: longer than 200 characters"),
    ],
)  # fmt: skip
def test_a_bad_absence_is_one_line_and_nothing_is_written(ipt: RunIpt, args: tuple[str, ...], message: str) -> None:
    create(ipt, "c1", "2027-01-04")
    before = ok_json(ipt("course", "show", "c1", "--json"))
    line = error_line(ipt("therapist", "absence", "add", *args, "--now", NOW))
    assert line.startswith(message), line
    assert ok_json(ipt("course", "show", "c1", "--json")) == before
    assert ok_json(ipt("therapist", "absence", "list", "--json")) == []


def test_removing_an_unknown_absence_is_refused(ipt: RunIpt) -> None:
    create(ipt, "c1", "2027-01-04")
    line = error_line(ipt("therapist", "absence", "remove", "abs_nope", "--now", NOW))
    assert line == "error: unknown absence 'abs_nope'"
