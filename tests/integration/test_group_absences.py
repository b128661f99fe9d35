"""A therapist's absence added or removed after a group exists moves the group's sessions
for every member (SPEC §9, §10), in the absence's one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from icalendar import Calendar

from ipt_workflow.groups import group_ics
from ipt_workflow.workflow import Workflow


def test_an_absence_after_the_group_exists_moves_its_sessions_and_tells_every_member(db_url: str) -> None:
    clock = datetime(2027, 4, 1, 9, tzinfo=UTC)
    with Workflow(db_url, clock=lambda: clock) as wf:
        wf.create_group(protocol="ipt-g-8", therapist="T-1", start="2027-04-19", time="10:00", tz="Europe/London",
                        group_id="G1", min=2, max=8)  # fmt: skip
        for i in (1, 2):
            wf.add_member("G1", client=f"c{i}", course_id=f"m{i}", pre=[f"2027-04-1{i}T11:00"])
        before = [s["start"] for s in wf.group("G1").model_dump(mode="json")["sessions"]]
        assert before[1] == "2027-04-26T10:00:00+01:00"
        change = wf.add_absence("T-1", "2027-04-26", "2027-04-30", reason="leave")
        after = [s["start"] for s in wf.group("G1").model_dump(mode="json")["sessions"]]
        # group session 2 moves off the absent week, as for a closure; the others keep their times
        assert after[1] != before[1] and not "2027-04-26" <= after[1][:10] <= "2027-04-30"
        assert after[0] == before[0]
        assert change.moved >= 1 and change.courses == 3  # the group and its two members
        for m in ("m1", "m2"):
            course_plan = wf.plan(m)
            session3 = next(s for s in course_plan.sessions if s.number == 3)  # member 3 = group 2
            assert session3.start.isoformat() == after[1]
            told = [r for r in course_plan.reminders if r.kind == "session_moved" and r.session == 3]
            assert len(told) == 1 and told[0].audience == "client"
            reminders = [r for r in course_plan.reminders if r.kind == "session_reminder" and r.session == 3]
            pending = [r for r in reminders if r.status == "pending"]
            # the old time's reminders cancelled, the new time's pending: none for the old time
            assert pending and all(datetime.fromisoformat(before[1]) < r.due < session3.start for r in pending)
            assert any(r.status == "cancelled" for r in reminders)
        # the group's calendar: session 2 at its new time, with a higher SEQUENCE (same UID)
        feed = Calendar.from_ical(group_ics(wf.store, wf.rules, "G1", clock))
        second = next(e for e in feed.walk("VEVENT") if str(e["uid"]) == "G1-session-2@ipt-workflow")
        assert second.decoded("dtstart").isoformat() == after[1] and int(second["sequence"]) == 1
        # removing it puts the session back for everyone
        wf.remove_absence(change.absence.id)
        assert [s["start"] for s in wf.group("G1").model_dump(mode="json")["sessions"]] == before
        assert next(s for s in wf.plan("m1").sessions if s.number == 3).start.isoformat() == before[1]
