"""Rule changes on stored courses (SPEC §11, issue 11), through the library on SQLite:

- a policy change reaches running courses by ``replan`` (and by their next event, and by the
  daemon before it emits), compared with the plan *as stored*: afterwards every running
  course's pending reminders are what a fresh plan under the new rules gives (hypothesis over
  random courses and random policy edits: leads, quiet hours, closures added and removed,
  holiday country);
- ``migrate`` of 1,000 courses in mixed states from ipt-16 1.0.0 to 1.1.0: the dry run writes
  nothing; the real run changes exactly what the dry run reported; refused and not running
  courses are left as they were.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from ipt_workflow import Workflow, rulechanges
from ipt_workflow.core.errors import ConflictError, UnknownName
from ipt_workflow.core.lifecycle import apply, new_course, raised
from ipt_workflow.core.model import Course, ReminderStatus
from ipt_workflow.core.planner import plan
from ipt_workflow.core.policy import ClinicPolicy
from ipt_workflow.core.protocol import Protocol
from ipt_workflow.rulebook.files import Rulebook, load_rules

BASE = load_rules()
IPT16 = BASE.protocol("ipt-16")
T0 = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)


def rules_with(policy: dict[str, Any], base: Rulebook = BASE) -> Rulebook:
    clinic = ClinicPolicy.model_validate({**base.clinic.model_dump(), **policy})
    return Rulebook(versions=base.versions, clinic=clinic)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def pending(wf: Workflow, course_id: str) -> dict[str, datetime]:
    return {r.id: r.due for r in wf.reminders(course=course_id, status="pending")}


def assert_pending_is_fresh_plan(wf: Workflow, rules: Rulebook, now: datetime) -> None:
    """Every running course: its pending reminders are its fresh plan's (those not already
    delivered), plus only therapist alerts already raised that the new plan lacks."""
    for row in wf.courses():
        course = wf.course(row.id)
        if course.state.value in ("completed", "withdrawn"):
            continue
        fresh = {r.id: r.due for r in plan(course, rules.protocol(course.protocol), rules.clinic).reminders}
        stored = {r.id: r for r in wf.reminders(course=course.id)}
        done = {rid for rid, r in stored.items() if r.status not in (ReminderStatus.pending, ReminderStatus.cancelled)}
        have = pending(wf, course.id)
        assert {k: v for k, v in have.items() if k in fresh} == {k: v for k, v in fresh.items() if k not in done}
        extra = [stored[rid] for rid in have if rid not in fresh]
        assert all(raised(r, now) for r in extra), [(r.kind, r.due) for r in extra]


# ---------------------------------------------------------------- the scenario


def test_leads_changed_then_pause_and_resume_leave_no_old_lead_pending(tmp_path: Path) -> None:
    clock = Clock(T0 - timedelta(days=3))
    old = rules_with({"reminder_leads": ["72h", "24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=old, clock=clock) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="10:00", tz="Europe/London", course_id="A")
        wf.apply("A", "complete_intake")
        leads = {r.id: r for r in wf.reminders(course="A", status="pending") if r.kind == "session_reminder"}
        assert len(leads) == 24  # 12 sessions, 72h and 24h
    new = rules_with({"reminder_leads": ["24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=new, clock=clock) as wf:
        clock.now += timedelta(hours=1)
        wf.apply("A", "pause")
        clock.now += timedelta(days=14)
        wf.apply("A", "resume")
        assert_pending_is_fresh_plan(wf, new, clock.now)
        kinds = [r for r in wf.reminders(course="A", status="pending") if r.kind == "session_reminder"]
        course = wf.course("A")
        starts = {s.number: s.start for s in wf.plan("A").sessions}
        assert all(starts[r.session] - r.due == timedelta(hours=24) for r in kinds)
        assert len(kinds) == sum(1 for s in wf.plan("A").sessions if s.status.value == "planned")
        assert course.rules_fingerprint == plan(course, IPT16, new.clinic).fingerprint


def test_a_lead_added_reaches_existing_courses_by_replan_and_the_event_path(tmp_path: Path) -> None:
    clock = Clock(T0 - timedelta(days=3))
    old = rules_with({"reminder_leads": ["24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=old, clock=clock) as wf:
        for cid in ("A", "B"):
            wf.create_course(client=f"CL-{cid}", start="2027-01-04", time="10:00", tz="Europe/London", course_id=cid)
    new = rules_with({"reminder_leads": ["24h", "2h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=new, clock=clock) as wf:
        wf.apply("A", "complete_intake")  # the event path: A gets its 2h reminders now
        assert sum(r.kind == "session_reminder" for r in wf.last_effects.added) == 12  # type: ignore[union-attr]
        dry = rulechanges.replan(wf.store, new, clock.now, dry_run=True)
        assert [c.course for c in dry.courses] == ["B"]  # A was replanned by its event
        assert len(dry.courses[0].reminders_added) == 12
        before = pending(wf, "B")
        real = rulechanges.replan(wf.store, new, clock.now)
        assert real.json() == {**dry.json(), "dry_run": False}
        assert len(pending(wf, "B")) == len(before) + 12
        assert_pending_is_fresh_plan(wf, new, clock.now)
        assert rulechanges.replan(wf.store, new, clock.now).courses == []  # nothing left to replan


def test_the_daemon_replans_a_course_planned_under_other_rules_before_it_emits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 - timedelta(days=5))
    old = rules_with({"reminder_leads": ["72h", "24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=old, clock=clock) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="10:00", tz="Europe/London", course_id="A")
        old_due = {r.id for r in wf.reminders(course="A", status="pending") if r.due <= T0 + timedelta(days=7)}
    new = rules_with({"reminder_leads": ["24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=new, clock=clock) as wf:
        sent: list[dict[str, Any]] = []
        at = T0 + timedelta(days=7)  # the 72h and 24h reminders of sessions 1 and 2 are due by then
        with caplog.at_level(logging.INFO, logger="ipt_workflow.rulechanges"):
            wf.dispatch([sent.append], now=at)
        sent = [e for e in sent if e["type"] != "digest"]  # the therapist's digests go out too
        course = wf.course("A")
        fresh = {r.id for r in plan(course, IPT16, new.clinic).reminders}
        assert sent and all(e["id"] in fresh for e in sent)
        assert {e["kind"] for e in sent} <= {"session_reminder", "attendance_unrecorded"}
        assert len(old_due - fresh) > 0  # the 72h ones: due, never sent
        assert "replanned course A: rules changed" in caplog.messages
        assert course.rules_fingerprint == plan(course, IPT16, new.clinic).fingerprint


# ---------------------------------------------------------------- property: replan = fresh plan

ZONES = ["Europe/London", "America/New_York", "Australia/Sydney"]
STEPS = ["complete_intake", "hold_session", "miss_session", "pause", "resume", "cancel_session", "withdraw"]


@st.composite
def policy_edits(draw: st.DrawFn) -> dict[str, Any]:
    edit: dict[str, Any] = {}
    if draw(st.booleans()):
        edit["reminder_leads"] = draw(st.lists(st.sampled_from(["72h", "24h", "2h", "30m", "48h"]), min_size=1,
                                               max_size=3, unique=True))  # fmt: skip
    if draw(st.booleans()):
        edit["quiet_hours"] = draw(st.sampled_from([None, {"start": "21:00", "end": "08:00"},
                                                    {"start": "20:00", "end": "09:30"}]))  # fmt: skip
    if draw(st.booleans()):
        days = draw(st.lists(st.integers(0, 120), max_size=6, unique=True))
        edit["closures"] = [(date(2027, 1, 4) + timedelta(days=d)).isoformat() for d in days]
    if draw(st.booleans()):
        edit["holidays"] = draw(st.sampled_from([None, {"country": "GB", "subdivision": "ENG"}, {"country": "US"},
                                                 {"country": "AU", "subdivision": "NSW"}]))  # fmt: skip
    return edit


@st.composite
def clinics(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, int, list[str]]]]:
    before = draw(policy_edits())
    after = draw(policy_edits())
    courses = draw(
        st.lists(st.tuples(st.sampled_from(ZONES), st.integers(0, 20), st.lists(st.sampled_from(STEPS), max_size=6)),
                 min_size=1, max_size=4)
    )  # fmt: skip
    return before, after, courses


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=clinics(), edit_then_event=st.booleans())
def test_after_replan_every_running_course_holds_what_a_fresh_plan_gives(
    tmp_path_factory: pytest.TempPathFactory, case: Any, edit_then_event: bool
) -> None:
    before, after, courses = case
    old, new = rules_with(before), rules_with(after)
    folder = tmp_path_factory.mktemp("replan")
    clock = Clock(T0 - timedelta(days=2))
    with Workflow(str(folder / "x.sqlite"), rules=old, clock=clock) as wf:
        for i, (zone, offset, _) in enumerate(courses):
            start = (date(2027, 1, 4) + timedelta(days=offset)).isoformat()
            wf.create_course(client=f"CL-{i}", start=start, time="10:00", tz=zone, course_id=f"c{i}")
        clock.now = T0 + timedelta(days=10)
        for i, (_, _, steps) in enumerate(courses[: len(courses) // 2 + 1]):
            run_steps(wf, f"c{i}", steps[:3], clock)
    clock.now += timedelta(days=1)
    with Workflow(str(folder / "x.sqlite"), rules=new, clock=clock) as wf:
        if edit_then_event:  # events under the new rules before the replan: the event path reconciles too
            for i, (_, _, steps) in enumerate(courses):
                run_steps(wf, f"c{i}", steps[3:], clock)
        dry = rulechanges.replan(wf.store, new, clock.now, dry_run=True)
        real = rulechanges.replan(wf.store, new, clock.now)
        assert real.json() == {**dry.json(), "dry_run": False}
        assert_pending_is_fresh_plan(wf, new, clock.now)
        again = rulechanges.replan(wf.store, new, clock.now, courses=[r.id for r in wf.courses()])
        # Nothing left to change (an attendance_unrecorded alert a replan kept as raised goes
        # when an event under the same rules records its session).
        assert [c.json() for c in again.courses if c.changed] == []


def run_steps(wf: Workflow, course_id: str, steps: list[str], clock: Clock) -> None:
    from ipt_workflow.core.errors import IptError

    for step in steps:
        clock.now += timedelta(hours=7)
        data = {"areas": ["grief"]} if step == "set_focus" else None
        try:
            wf.apply(course_id, step, data)
        except IptError:
            continue


# ---------------------------------------------------------------- migrate 1,000 courses


def version_110() -> Protocol:
    data = IPT16.model_dump(by_alias=True, exclude_none=True)
    data.update(version="1.1.0", sessions={"min": 8, "planned": 10, "max": 12})
    data["problem_areas"] = ["grief", "role_dispute", "role_transition"]
    return Protocol.model_validate(data)


def mixed_courses(n: int) -> list[tuple[Course, Any]]:
    """``n`` ipt-16 1.0.0 courses in mixed states, built in memory: intake, assessment,
    intervention (some on interpersonal_deficits, which 1.1.0 lacks), some extended past what
    1.1.0 allows, paused, completed early by withdrawal."""
    policy = BASE.clinic
    out = []
    for i in range(n):
        at = T0 - timedelta(days=30)
        c = new_course(IPT16, policy, course_id=f"m{i:04d}", client=f"CL-{i}", therapist="unassigned",
                       start=date(2027, 1, 4) + timedelta(days=i % 50), slot=time(9 + i % 8, 0),
                       timezone=ZONES[i % 3], now=at)  # fmt: skip
        steps: list[tuple[str, dict[str, Any] | None]] = []
        kind = i % 7
        if kind >= 1:
            steps.append(("complete_intake", None))
        if kind >= 2:
            area = "interpersonal_deficits" if i % 5 == 0 else "grief"
            steps += [("hold_session", None), ("set_focus", {"areas": [area]})]
        if kind >= 3:
            steps += [("start_intervention", None)]
        if kind == 4:
            steps += [("extend", {"sessions": 4})]
        if kind == 5:
            steps += [("pause", None)]
        if kind == 6:
            steps += [("withdraw", None)]
        for event, data in steps:
            at += timedelta(hours=1)
            if event == "hold_session":
                at = plan(c, IPT16, policy).sessions[0].start.astimezone(UTC) + timedelta(minutes=50)
            c, _ = apply(c, event, at, IPT16, policy, data)
        out.append((c, plan(c, IPT16, policy)))
    return out


PLAN_COLUMN = 20  # ipt_courses.plan in SELECT *


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in ("ipt_courses", "ipt_history", "ipt_sessions", "ipt_reminders"):
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2")).all()
            out[table] = [tuple(r) for r in rows]
    engine.dispose()
    return out


def by_course(snap: dict[str, list[tuple[Any, ...]]], course_id: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table: [r for r in rows if r[0] == course_id] for table, rows in snap.items()}


def test_migrating_1000_courses_changes_exactly_what_the_dry_run_said(tmp_path: Path) -> None:
    rules = Rulebook(versions={**BASE.versions, "ipt-16": {"1.0.0": IPT16, "1.1.0": version_110()}},
                     clinic=BASE.clinic)  # fmt: skip
    path = tmp_path / "x.sqlite"
    url = f"sqlite:///{path}"
    now = T0 + timedelta(days=60)  # after every course's last event
    with Workflow(str(path), rules=rules, clock=Clock(now)) as wf:
        wf.store.add_many(mixed_courses(1000), now)
        start = snapshot(url)
        dry = rulechanges.migrate(wf.store, rules, "ipt-16", "1.1.0", now, dry_run=True)
        assert snapshot(url) == start  # the dry run wrote nothing
        real = rulechanges.migrate(wf.store, rules, "ipt-16", "1.1.0", now)
        assert real.json() == {**dry.json(), "dry_run": False}
        report = real.json()
        assert report["migrated"] > 400 and report["refused"] > 100
        reasons = {re.sub(r"\d+", "N", c["reason"]) for c in report["courses"] if c["status"] == "refused"}
        assert reasons == {
            "its plan would make N session entries, past N.N.N's maximum of N",
            "focus area 'interpersonal_deficits' is not a problem area of N.N.N",
        }
        end = snapshot(url)
        listed = {c["course"]: c for c in report["courses"]}
        for i in range(1000):
            cid = f"m{i:04d}"
            was, now_ = by_course(start, cid), by_course(end, cid)
            change = listed.get(cid)
            if change is None or change["status"] == "refused":
                assert now_ == was, cid  # not running (withdrawn) or refused: untouched
                assert change is not None or i % 7 == 6
                continue
            course = wf.course(cid)
            assert (course.protocol_version, course.history[-1].event) == ("1.1.0", "migrate")
            assert course.history[-1].data == {"from": "1.0.0", "to": "1.1.0"}
            before = {r[1] for r in was["ipt_reminders"] if r[6] == "pending"}
            after = {r[1] for r in now_["ipt_reminders"] if r[6] == "pending"}
            added = {r["id"] for r in change["reminders"]["added"]}
            cancelled = {r["id"] for r in change["reminders"]["cancelled"]}
            assert after == (before - cancelled) | added, cid
            numbers = {s.number for s in wf.plan(cid).sessions}
            old_numbers = {s[0] for s in json.loads(was["ipt_courses"][0][PLAN_COLUMN])}
            assert numbers == (old_numbers - {s["number"] for s in change["sessions"]["removed"]}) | {
                s["number"] for s in change["sessions"]["added"]
            }
        assert rulechanges.migrate(wf.store, rules, "ipt-16", "1.1.0", now).json()["migrated"] == 0


def test_the_library_calls_migrate_and_replan(tmp_path: Path) -> None:
    rules = Rulebook(versions={**BASE.versions, "ipt-16": {"1.0.0": IPT16, "1.1.0": version_110()}},
                     clinic=BASE.clinic)  # fmt: skip
    clock = Clock(T0 - timedelta(days=3))
    with Workflow(str(tmp_path / "x.sqlite"), rules=rules, clock=clock) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="10:00", tz="Europe/London",
                         protocol="ipt-16@1.0.0", course_id="A")  # fmt: skip
        dry = wf.migrate("ipt-16", "1.1.0", dry_run=True)
        assert [(c.course, c.status) for c in dry.courses] == [("A", "migrated")]
        assert wf.course("A").protocol_version == "1.0.0"
        assert wf.migrate("ipt-16", "1.1.0") == dry.model_copy(update={"dry_run": False})
        course = wf.course("A")
        assert (course.protocol_version, course.planned_sessions, len(wf.plan("A").sessions)) == ("1.1.0", 10, 10)
        assert wf.replan().courses == []
        with pytest.raises(UnknownName, match=r"^--to: protocol 'ipt-16' has no version '9\.9\.9'"):
            wf.migrate("ipt-16", "9.9.9")


def test_a_plan_stored_before_revision_0007_counts_as_made_under_other_rules(tmp_path: Path) -> None:
    clock = Clock(T0 - timedelta(days=3))
    path = str(tmp_path / "x.sqlite")
    with Workflow(path, rules=BASE, clock=clock) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="10:00", tz="Europe/London", course_id="A")
        with wf.store.engine.begin() as conn:  # what the upgrade to 0008 leaves in an older row
            conn.execute(text("UPDATE ipt_courses SET rules_fingerprint = NULL"))
        before = pending(wf, "A")
        report = wf.replan()
        assert [(c.course, c.status) for c in report.courses] == [("A", "unchanged")]
        assert pending(wf, "A") == before
        assert wf.course("A").rules_fingerprint == plan(wf.course("A"), IPT16, BASE.clinic).fingerprint
        assert wf.replan().courses == []


def test_an_absence_on_a_course_planned_under_other_rules_compares_with_the_stored_reminders(tmp_path: Path) -> None:
    clock = Clock(T0 - timedelta(days=3))
    old = rules_with({"reminder_leads": ["72h", "24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=old, clock=clock) as wf:
        wf.create_course(client="CL-1", therapist="T1", start="2027-01-04", time="10:00", tz="Europe/London",
                         course_id="A")  # fmt: skip
        wf.apply("A", "complete_intake")
    new = rules_with({"reminder_leads": ["24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=new, clock=clock) as wf:
        change = wf.add_absence("T1", "2027-01-18", "2027-01-19")
        assert change.courses == 1
        leads = [r for r in wf.reminders(course="A", status="pending") if r.kind == "session_reminder"]
        starts = {s.number: s.start for s in wf.plan("A").sessions}
        assert {starts[r.session] - r.due for r in leads} == {timedelta(hours=24)}  # no 72h lead left
        assert_pending_is_fresh_plan(wf, new, clock.now)
        assert rulechanges.replan(wf.store, new, clock.now).courses == []


def test_replan_in_worker_processes_writes_what_the_one_process_path_writes(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks planned in forked workers (each reading through its own connection) and written
    by this process, on SQLite and PostgreSQL, give the report and the reminders that planning
    in process on SQLite gives."""
    clock = Clock(T0 - timedelta(days=3))
    old = rules_with({"reminder_leads": ["72h", "24h"], "quiet_hours": None})
    urls = {"serial": str(tmp_path / "serial.sqlite"), "workers": db_url}
    for url in urls.values():
        with Workflow(url, rules=old, clock=clock) as wf:
            for i in range(30):
                wf.create_course(client=f"CL-{i}", start=(date(2027, 1, 4) + timedelta(days=i)).isoformat(),
                                 time="10:00", tz=ZONES[i % 3], course_id=f"c{i:02d}")  # fmt: skip
                if i % 3:
                    wf.apply(f"c{i:02d}", "complete_intake")
    new = rules_with({"reminder_leads": ["24h", "2h"], "quiet_hours": {"start": "21:00", "end": "08:00"}})
    monkeypatch.setattr(rulechanges, "CHUNK", 7)
    reports, reminders = [], []
    for name, parallel_from in (("serial", 10**9), ("workers", 0)):
        monkeypatch.setattr(rulechanges, "PARALLEL_FROM", parallel_from)
        with Workflow(urls[name], rules=new, clock=clock) as wf:
            reports.append(rulechanges.replan(wf.store, new, clock.now).json())
            assert_pending_is_fresh_plan(wf, new, clock.now)
            reminders.append({(r.course, r.id): (r.status, r.due) for r in wf.reminders()})
            assert {wf.course(c.id).version for c in wf.courses()} == {2, 3}  # created 1, intake +1, replan +1
    assert reports[0] == reports[1]
    assert reports[0]["replanned"] == 30
    assert reminders[0] == reminders[1]


def test_the_daemon_dry_run_leaves_out_what_a_replan_would_cancel_and_writes_nothing(tmp_path: Path) -> None:
    from ipt_workflow.delivery.dispatch import preview

    clock = Clock(T0 - timedelta(days=5))
    old = rules_with({"reminder_leads": ["72h", "24h"], "quiet_hours": None})
    with Workflow(str(tmp_path / "x.sqlite"), rules=old, clock=clock) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="10:00", tz="Europe/London", course_id="A")
    new = rules_with({"reminder_leads": ["24h"], "quiet_hours": None})
    at = T0 + timedelta(days=7)
    with Workflow(str(tmp_path / "x.sqlite"), rules=new, clock=clock) as wf:
        before = snapshot(f"sqlite:///{tmp_path / 'x.sqlite'}")
        unchecked, _ = preview(wf.store, at, [])
        watch = rulechanges.RulesWatch(wf.store, new, None, reload=False)
        checked, _ = preview(wf.store, at, [], watch.preview)
        assert snapshot(f"sqlite:///{tmp_path / 'x.sqlite'}") == before  # nothing written
        fresh = {r.id for r in plan(wf.course("A"), IPT16, new.clinic).reminders}
        assert {e["id"] for e in unchecked} - fresh  # the 72h leads are due...
        assert checked and all(e["id"] in fresh for e in checked)  # ...and left out of the preview
        assert [e for e in unchecked if e["id"] in fresh] == checked


def version_with_more_sessions() -> Protocol:
    data = IPT16.model_dump(by_alias=True, exclude_none=True)
    data.update(version="1.1.0", sessions={"min": 8, "planned": 14, "max": 18})
    return Protocol.model_validate(data)


@pytest.mark.parametrize("change", ["replan", "replan_course", "migrate"])
def test_new_times_that_clash_are_booked_with_a_schedule_conflict_alert(tmp_path: Path, change: str) -> None:
    """A replan (a closure moves a session; many courses, or one as the daemon does) or a
    migration (more sessions) that books the therapist over another course's session books it
    anyway with a schedule_conflict alert, listed among the reminders added; the other course
    is left as it was."""
    rules = Rulebook(versions={**BASE.versions, "ipt-16": {"1.0.0": IPT16, "1.1.0": version_with_more_sessions()}},
                     clinic=rules_with({"quiet_hours": None}).clinic)  # fmt: skip
    clock = Clock(T0 - timedelta(days=3))
    with Workflow(str(tmp_path / "x.sqlite"), rules=rules, clock=clock) as wf:
        wf.create_course(client="CL-A", therapist="T1", start="2027-01-04", time="10:00", tz="Europe/London",
                         protocol="ipt-16@1.0.0", course_id="A")  # fmt: skip
        last = wf.plan("A").sessions[-1].start
        # B starts where A would go next: a week after A's last session (migrate), or the day
        # after A's third session, where a closure on that day moves it (replan).
        third = wf.plan("A").sessions[2].start
        b_start = (last + timedelta(days=7) if change == "migrate" else third + timedelta(days=1)).date()
        wf.create_course(client="CL-B", therapist="T1", start=b_start.isoformat(), time="10:00",
                         tz="Europe/London", protocol="ipt-16@1.0.0", course_id="B")  # fmt: skip
        b_before = [r.id for r in wf.reminders(course="B")]
    if change != "migrate":
        rules = Rulebook(versions=rules.versions, clinic=rules_with({"closures": [third.date().isoformat()],
                                                                     "quiet_hours": None}).clinic)  # fmt: skip
    with Workflow(str(tmp_path / "x.sqlite"), rules=rules, clock=clock) as wf:
        if change == "migrate":
            a = wf.migrate("ipt-16", "1.1.0", courses=["A"]).courses[0]
        else:
            one = change == "replan_course"
            a = rulechanges.replan_course(wf.store, rules, "A", clock.now) if one else wf.replan(["A"]).courses[0]
        # the library's typed result and the service's record say the same
        shown = a.model_dump(by_alias=True) if hasattr(a, "model_dump") else a.json()
        if change != "migrate":
            moved = [s for s in shown["sessions"]["moved"] if s["number"] == 3]
            assert moved and moved[0]["to"].startswith(b_start.isoformat())
        conflicts = [r for r in shown["reminders"]["added"] if r["kind"] == "schedule_conflict"]
        assert conflicts, shown
        stored = [r for r in wf.reminders(course="A", status="pending") if r.kind == "schedule_conflict"]
        assert [r.id for r in stored] == [c["id"] for c in conflicts]
        assert stored and all((r.rule or "").startswith("clash:B#") for r in stored)
        assert [r.id for r in wf.reminders(course="B")] == b_before


@pytest.mark.parametrize("kind", ["replan", "migrate"])
def test_a_course_another_writer_saves_mid_replan_is_read_again_and_both_changes_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The other writer's event lands between the replan's read and its write: the write is
    refused (version moved on), the course is read again and replanned once more, and the
    stored course has both the other event and the new plan. A writer that always wins makes
    the replan give up with the conflict after ``TRIES`` attempts, nothing of it written."""
    clock = Clock(T0 - timedelta(days=3))
    target = version_110()
    both = {**BASE.versions, "ipt-16": {"1.0.0": IPT16, "1.1.0": target}}
    first = rules_with({"reminder_leads": ["72h"], "quiet_hours": None})  # ipt-16 1.0.0 only
    old = Rulebook(versions=both, clinic=first.clinic)
    db = str(tmp_path / "x.sqlite")
    with Workflow(db, rules=first, clock=clock) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="10:00", tz="Europe/London", course_id="A")
        wf.apply("A", "complete_intake")
    new = Rulebook(versions=both, clinic=rules_with({"reminder_leads": ["24h"], "quiet_hours": None}).clinic)
    real = rulechanges._replanned
    races = {"left": 1}

    def racing(*args: Any, **kwargs: Any) -> Any:
        if races["left"]:
            races["left"] -= 1
            with Workflow(db, rules=old, clock=clock) as other:
                other.apply("A", "record_measure", {"instrument": "phq9", "score": 11, "item9": 0})
        return real(*args, **kwargs)

    monkeypatch.setattr(rulechanges, "_replanned", racing)
    with Workflow(db, rules=new, clock=clock) as wf:
        if kind == "replan":
            change = rulechanges.replan_course(wf.store, new, "A", clock.now)
        else:
            change = rulechanges.migrate_one(wf.store, new, "A", target, clock.now)
        course = wf.course("A")
        assert races["left"] == 0, change
        assert [m.score for m in course.measurements] == [11]
        assert course.version == 4  # create, complete_intake, the other writer's event, the replan
        if kind == "replan":
            assert change.status == "replanned"
            assert_pending_is_fresh_plan(wf, new, clock.now)
        else:
            assert (change.status, course.protocol_version) == ("migrated", "1.1.0")
            assert course.history[-1].event == "migrate"
        races["left"] = 99
        before = wf.course("A").version
        with pytest.raises(ConflictError):
            newer = rules_with({"reminder_leads": ["48h"], "quiet_hours": None}).clinic
            rulechanges.replan_course(wf.store, Rulebook(versions=new.versions, clinic=newer), "A", clock.now)
        assert races["left"] == 99 - rulechanges.TRIES
        assert wf.course("A").version == before + rulechanges.TRIES  # only the other writer's events
