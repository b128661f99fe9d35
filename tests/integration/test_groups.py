"""Group IPT (SPEC §10) through the library, on SQLite and PostgreSQL: a cohort through the
whole protocol, attendance per member in one transaction, bad input refused whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from ipt_workflow.core.errors import InvalidInput, IptError, Refused, ScheduleClash
from ipt_workflow.workflow import Workflow


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _group(wf: Workflow, gid: str = "G1", **kw: object) -> None:
    args: dict[str, object] = {"protocol": "ipt-g-8", "therapist": "T-1", "start": "2027-04-19", "time": "10:00",
                               "tz": "Europe/London", "group_id": gid, "min": 6, "max": 8}  # fmt: skip
    args.update(kw)
    wf.create_group(**args)  # type: ignore[arg-type]


def _starts(wf: Workflow, gid: str = "G1") -> list[str]:
    return [s.start.isoformat() for s in wf.group(gid).sessions]


def test_a_cohort_of_eight_through_the_protocol(db_url: str) -> None:
    clock = Clock(datetime(2027, 4, 1, 9, tzinfo=UTC))
    with Workflow(db_url, clock=clock) as wf:
        _group(wf, min=7)
        planned = _starts(wf)
        # Early May bank holiday (Mon 2027-05-03): group session 3 moves to Tuesday for everyone
        assert planned[2] == "2027-05-04T10:00:00+01:00"
        members = [wf.add_member("G1", client=f"c{i}", course_id=f"m{i}").id for i in range(1, 9)]
        pre = [wf.course(m).history[0].data["pre"][0] for m in members]
        assert len(set(pre)) == 8  # never two members at one time
        assert all("2027-04-05" <= p < "2027-04-19" for p in pre)
        for m, p in zip(members, pre, strict=True):  # each member's own pre-group session
            clock.now = datetime.fromisoformat(p).astimezone(UTC) + timedelta(hours=2)
            wf.apply(m, "complete_intake")
            wf.apply(m, "hold_session", {"number": 1})
            wf.apply(m, "set_focus", {"areas": ["role_transition"]})
        absent = {1: ["m2"], 2: ["m2", "m3"], 4: ["m4"], 7: ["m5"]}
        for n in range(1, 9):
            start = datetime.fromisoformat(_starts(wf)[n - 1])
            clock.now = start.astimezone(UTC) + timedelta(hours=2)
            wf.group_event("G1", "hold_session", {"absent": absent.get(n, [])})
            if n == 2:
                wf.apply("m8", "pause")
            if n == 3:
                wf.apply("m7", "withdraw")
            if n == 5:
                wf.apply("m8", "resume")
            assert _starts(wf) == planned  # one member's miss, pause or withdrawal never moves the group
        data = wf.group("G1")
        assert data.sessions[0].absent == ["m2"]
        assert sorted(data.sessions[0].present) == ["m1", "m3", "m4", "m5", "m6", "m7", "m8"]
        assert "m8" not in data.sessions[3].present + data.sessions[3].absent  # paused then
        wf.group_event("G1", "complete")
        states = {m.course: m.state for m in wf.group("G1").members}
        assert states == {**{f"m{i}": "completed" for i in range(1, 9)}, "m7": "withdrawn"}
        m8 = wf.course("m8")
        held = [s.number for s in m8.sessions if s.status.value == "held"]
        assert held == [1, 2, 3, 7, 8, 9]  # rejoined the group's remaining sessions after the pause
        m2 = wf.course("m2")
        assert [s.number for s in m2.sessions if s.status.value == "missed"] == [2, 3]
        assert any(a.kind == "attendance_review" for a in m2.alerts)
        # every member got client reminders for the group sessions, and a withdrawal below min
        # raised group_size_review for the therapist
        reminders = wf.reminders(course="m1")
        assert sum(1 for r in reminders if r.kind == "session_reminder") >= 9
        alerts = [r for r in wf.reminders(course="m7") if r.kind == "group_size_review"]
        assert len(alerts) == 1 and alerts[0].audience == "therapist"
        assert wf.group("G1").state == "completed"


def test_group_sessions_book_the_therapist_once(db_url: str) -> None:
    clock = Clock(datetime(2027, 4, 1, 9, tzinfo=UTC))
    with Workflow(db_url, clock=clock) as wf:
        _group(wf)
        for i in range(3):
            wf.add_member("G1", client=f"c{i}", course_id=f"m{i}")
        with pytest.raises(ScheduleClash, match=r"therapist T-1 is booked Mon 2027-04-26 10:00–11:30 BST \(group G1"):
            wf.create_course(client="x", start="2027-04-26", time="10:00", tz="Europe/London", therapist="T-1")
        with pytest.raises(ScheduleClash, match=r"\(group G1, session 1\)"):
            _group(wf, "G2")
        _group(wf, "G2", time="14:00")  # another slot: fine; its own pre-group sessions clash with none
        pre1 = {wf.course(f"m{i}").history[0].data["pre"][0] for i in range(3)}
        pre2 = {wf.add_member("G2", client=f"d{i}").history[0].data["pre"][0] for i in range(3)}
        assert not pre1 & pre2


def test_bad_input_writes_nothing(db_url: str, raw_engine: Engine) -> None:
    clock = Clock(datetime(2027, 4, 1, 9, tzinfo=UTC))
    with Workflow(db_url, clock=clock) as wf:
        with pytest.raises(InvalidInput, match="min: 9 is more than max 8"):
            _group(wf, min=9)
        with pytest.raises(InvalidInput, match="not a group protocol"):
            _group(wf, protocol="ipt-16")
        _group(wf, min=1, max=2)
        wf.add_member("G1", client="a", course_id="m1")
        wf.add_member("G1", client="b", course_id="m2")
        with pytest.raises(Refused, match="group G1 is full \\(2 of 2 members\\)"):
            wf.add_member("G1", client="c", course_id="m3")
        clock.now = datetime(2027, 4, 19, 12, tzinfo=UTC)
        with pytest.raises(InvalidInput, match="absent: 'crs_x' is not a member of group G1"):
            wf.group_event("G1", "hold_session", {"absent": ["crs_x"]})
        with raw_engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ipt_courses")).scalar() == 2
            assert conn.execute(text("SELECT count(*) FROM ipt_sessions")).scalar() == 0
            assert conn.execute(text("SELECT version FROM ipt_groups")).scalar() == 1
        wf.group_event("G1", "hold_session")
        with pytest.raises(Refused, match=r"session 2 .* is still planned"):
            wf.group_event("G1", "complete")


def test_finished_group_takes_no_member(db_url: str) -> None:
    clock = Clock(datetime(2027, 4, 1, 9, tzinfo=UTC))
    with Workflow(db_url, clock=clock) as wf:
        _group(wf, min=1)
        for n in range(8):
            clock.now = datetime(2027, 4, 19, 12, tzinfo=UTC) + timedelta(weeks=n, days=1)
            wf.group_event("G1", "hold_session")
        wf.group_event("G1", "complete")
        with pytest.raises(IptError, match="group G1 is completed"):
            wf.add_member("G1", client="late")
