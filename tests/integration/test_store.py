"""The SQL store through the library facade, on SQLite and on PostgreSQL (issue 3, SPEC §8).

Every test that takes ``db_url`` runs once per backend on a database of its own. Rows are
checked with a plain SQLAlchemy engine of the test's (``raw_engine``), not through the store.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, func, inspect, select, text

import ipt_workflow
from ipt_workflow import (
    ConflictError,
    Course,
    InvalidInput,
    Refused,
    StoreError,
    UnknownName,
    Workflow,
    importing,
)
from ipt_workflow.storage import schema as t
from ipt_workflow.storage.sql import HEAD_REVISION, SqlStore, upgrade

from .conftest import sqlalchemy_url

START, SLOT, TZ = "2026-03-02", "10:00", "Europe/London"  # Mondays 10:00; BST from 2026-03-29
T0 = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)
TABLES = ("ipt_courses", "ipt_history", "ipt_sessions", "ipt_measurements", "ipt_reminders")


class Clock:
    """A settable clock for ``Workflow(clock=...)``."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, day: str, hhmm: str) -> datetime:
        """Set the clock to a London wall-clock time (what a user at the clinic types)."""
        self.now = datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wf(db_url: str, clock: Clock) -> Iterator[Workflow]:
    with Workflow(db_url, clock=clock) as workflow:
        yield workflow


def new_course(wf: Workflow, course_id: str = "crs-1", **kw: Any) -> Course:
    args = {"client": "CL-0042", "start": START, "time": SLOT, "tz": TZ, "therapist": "th-7", **kw}
    return wf.create_course(course_id=course_id, **args)


def event(wf: Workflow, clock: Clock, course_id: str, name: str, day: str, hhmm: str, data: Any = None) -> Course:
    """Apply ``name`` at a London wall-clock time, the clock reading the same."""
    clock.at(day, hhmm)
    return wf.apply(course_id, name, data)


def rows(engine: Engine, table: str, course_id: str | None = None) -> list[dict[str, Any]]:
    """Every row of an ipt table (for one course), in primary-key order."""
    tbl = t.metadata.tables[table]
    query = select(tbl).order_by(*tbl.primary_key.columns)
    if course_id is not None:
        key = tbl.c.id if table == "ipt_courses" else tbl.c.course_id
        query = query.where(key == course_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """The whole content of every ipt table."""
    return {table: rows(engine, table) for table in TABLES}


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(select(func.count()).select_from(t.metadata.tables[table])).scalar_one()
            for table in TABLES
        }


def expected_plan(wf: Workflow, course: Course) -> ipt_workflow.Plan:
    """The plan the core computes for ``course``, independently of the store."""
    return ipt_workflow.plan(course, wf.rules.protocol(course.protocol), wf.rules.clinic)


def reminder_status(engine: Engine, course_id: str) -> dict[str, str]:
    return {r["id"]: r["status"] for r in rows(engine, "ipt_reminders", course_id)}


def assert_pending_matches_plan(wf: Workflow, engine: Engine, course: Course) -> None:
    """The pending reminders stored are exactly those of the course's current plan, due when
    the plan says; everything else once stored is cancelled."""
    planned = {r.id: r for r in expected_plan(wf, course).reminders}
    stored = rows(engine, "ipt_reminders", course.id)
    pending = {r["id"]: r for r in stored if r["status"] == "pending"}
    assert set(pending) == set(planned)
    for rid, row in pending.items():
        r = planned[rid]
        assert (row["due"], row["kind"], row["audience"], row["session"], row["rule"]) == (
            r.due, r.kind, r.audience, r.session, r.rule
        )  # fmt: skip
    assert {r["status"] for r in stored if r["id"] not in planned} <= {"cancelled"}


def same_course(loaded: Course, returned: Course) -> bool:
    """Equal, alerts included in their order (both keep them in (due, id) order)."""
    return loaded == returned


# ---------------------------------------------------------------- create


def test_create_course_writes_the_course_its_history_and_its_reminders(
    wf: Workflow, raw_engine: Engine, clock: Clock
) -> None:
    course = new_course(wf)
    assert (course.version, course.state.value) == (1, "intake")

    [row] = rows(raw_engine, "ipt_courses")
    assert row["id"] == "crs-1"
    assert (row["client"], row["therapist"], row["protocol"], row["timezone"]) == ("CL-0042", "th-7", "ipt-16", TZ)
    assert row["protocol_version"] == wf.rules.protocol("ipt-16").version
    assert (row["start_date"], row["slot"], row["state"]) == (date(2026, 3, 2), "10:00", "intake")
    assert (row["version"], row["schema_version"], row["planned_sessions"]) == (1, 1, 12)
    assert row["created_at"] == clock.now == row["updated_at"]
    assert (row["focus"], row["foci_worked"], row["pauses"], row["current_focus"]) == ([], [], [], None)

    [h] = rows(raw_engine, "ipt_history")
    assert (h["course_id"], h["seq"], h["event"], h["from_state"], h["to_state"], h["rule"]) == (
        "crs-1", 0, "create", None, "intake", None
    )  # fmt: skip
    assert h["at"] == clock.now

    plan = expected_plan(wf, course)
    stored = rows(raw_engine, "ipt_reminders")
    assert len(stored) == len(plan.reminders) > 0
    assert {r["status"] for r in stored} == {"pending"}
    assert {r["attempts"] for r in stored} == {0}
    assert_pending_matches_plan(wf, raw_engine, course)
    assert rows(raw_engine, "ipt_sessions") == []  # planned sessions are recomputed, never stored
    assert rows(raw_engine, "ipt_measurements") == []

    assert [c.id for c in wf.courses()] == ["crs-1"]
    assert [c.id for c in wf.courses(state="intake", therapist="th-7")] == ["crs-1"]
    assert wf.courses(state="assessment") == wf.courses(therapist="th-8") == []


def test_create_course_with_an_id_that_exists_is_refused(wf: Workflow, raw_engine: Engine) -> None:
    new_course(wf)
    before = snapshot(raw_engine)
    with pytest.raises(InvalidInput, match="crs-1"):
        new_course(wf, client="CL-0043")
    assert snapshot(raw_engine) == before


# ---------------------------------------------------------------- events


def test_events_bump_the_version_and_append_history_sessions_measures_and_alerts(
    wf: Workflow, raw_engine: Engine, clock: Clock
) -> None:
    new_course(wf)
    steps = [
        ("hold_session", "2026-03-02", "10:50", None, "intake", "intake"),
        ("record_measure", "2026-03-02", "10:55", {"instrument": "phq9", "score": 18, "item9": 1}, "intake", "intake"),
        ("complete_intake", "2026-03-02", "11:00", None, "intake", "assessment"),
        ("miss_session", "2026-03-09", "10:20", None, "assessment", "assessment"),
    ]
    for n, (name, day, hhmm, data, src, dst) in enumerate(steps, start=1):
        course = event(wf, clock, "crs-1", name, day, hhmm, data)
        assert course.version == n + 1
        [row] = rows(raw_engine, "ipt_courses")
        assert (row["version"], row["state"], row["updated_at"]) == (n + 1, dst, clock.now)
        history = rows(raw_engine, "ipt_history")
        assert len(history) == n + 1
        last = history[-1]
        assert (last["seq"], last["event"], last["from_state"], last["to_state"], last["rule"]) == (
            n, name, src, dst, None
        )  # fmt: skip
        assert last["at"] == clock.now
        assert last["data"] == (data or {})
        assert_pending_matches_plan(wf, raw_engine, course)

    sessions = rows(raw_engine, "ipt_sessions")
    assert [(s["number"], s["status"], s["phase"]) for s in sessions] == [
        (1, "held", "intake"),
        (2, "missed", "assessment"),
    ]
    assert sessions[0]["start_utc"] == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert sessions[0]["start_local"] == "2026-03-02T10:00:00+00:00"
    assert (sessions[0]["duration_minutes"], sessions[0]["participants"]) == (50, ["client"])

    [m] = rows(raw_engine, "ipt_measurements")
    assert (m["seq"], m["instrument"], m["score"], m["item9"], m["session"]) == (0, "phq9", 18, 1, 1)
    assert m["at"] == datetime(2026, 3, 2, 10, 55, tzinfo=UTC)

    [alert] = [r for r in rows(raw_engine, "ipt_reminders") if r["kind"] == "safety_alert"]
    assert (alert["rule"], alert["audience"], alert["status"], alert["session"]) == (
        "safety.item9", "therapist", "pending", 1
    )  # fmt: skip
    assert alert["due"] == datetime(2026, 3, 2, 10, 55, tzinfo=UTC)  # immediate
    assert [r.kind for r in wf.reminders(course="crs-1") if r.rule] == ["safety_alert"]


def test_a_transition_taken_by_a_rule_is_stored_with_the_rule(wf: Workflow, raw_engine: Engine, clock: Clock) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    event(wf, clock, "crs-1", "complete_intake", "2026-03-02", "11:00")
    event(wf, clock, "crs-1", "hold_session", "2026-03-09", "10:50")
    event(wf, clock, "crs-1", "set_focus", "2026-03-09", "10:55", {"areas": ["grief", "role_dispute"]})
    course = event(wf, clock, "crs-1", "start_intervention", "2026-03-09", "11:00")
    while course.state.value == "intervention":  # each held at its start (Easter Monday's on Tuesday)
        day = next(s.start.date() for s in wf.plan("crs-1").sessions if s.status.value == "planned")
        course = event(wf, clock, "crs-1", "hold_session", day.isoformat(), "10:50")
    assert course.state.value == "termination"
    history = rows(raw_engine, "ipt_history")
    auto = history[-1]
    assert (auto["event"], auto["from_state"], auto["to_state"], auto["rule"]) == (
        "begin_termination", "intervention", "termination", "termination.auto"
    )  # fmt: skip
    assert history[-2]["event"] == "hold_session"
    assert history[-2]["at"] == auto["at"] == clock.now
    assert [h["seq"] for h in history] == list(range(len(history)))
    # one event, one version, however many history entries it wrote
    assert rows(raw_engine, "ipt_courses")[0]["version"] == course.version == len(history) - 1
    assert rows(raw_engine, "ipt_courses")[0]["current_focus"] == "grief"
    assert_pending_matches_plan(wf, raw_engine, course)


def test_a_missed_session_cancels_the_moved_reminders_and_adds_new_ones(
    wf: Workflow, raw_engine: Engine, clock: Clock
) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    event(wf, clock, "crs-1", "complete_intake", "2026-03-02", "11:00")
    before = reminder_status(raw_engine, "crs-1")
    course = event(wf, clock, "crs-1", "miss_session", "2026-03-09", "10:20")
    effects = wf.last_effects
    assert effects is not None and effects.cancelled and effects.added
    after = reminder_status(raw_engine, "crs-1")
    assert {after[rid] for rid in effects.cancelled} == {"cancelled"}
    assert {after[r.id] for r in effects.added} == {"pending"}
    assert set(after) == set(before) | {r.id for r in effects.added}  # rows are never deleted
    untouched = {rid for rid, status in before.items() if status == "pending"} - set(effects.cancelled)
    assert {after[rid] for rid in untouched} == {"pending"}
    assert_pending_matches_plan(wf, raw_engine, course)


def test_pause_and_resume_replan_and_a_reminder_planned_again_is_pending_again(
    wf: Workflow, raw_engine: Engine, clock: Clock
) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    original = reminder_status(raw_engine, "crs-1")

    paused = event(wf, clock, "crs-1", "pause", "2026-03-03", "09:00")
    assert paused.state.value == "paused"
    cancelled = set(wf.last_effects.cancelled)  # type: ignore[union-attr]
    assert cancelled
    assert {reminder_status(raw_engine, "crs-1")[rid] for rid in cancelled} == {"cancelled"}
    assert_pending_matches_plan(wf, raw_engine, paused)

    # resumed before the next session: the plan is what it was, the same reminders are pending again
    resumed = event(wf, clock, "crs-1", "resume", "2026-03-04", "09:00")
    assert resumed.state.value == "intake"
    assert reminder_status(raw_engine, "crs-1") == original
    assert_pending_matches_plan(wf, raw_engine, resumed)

    # a pause over two weeks' slots shifts the plan: the old reminders stay cancelled, new ones come
    event(wf, clock, "crs-1", "pause", "2026-03-05", "09:00")
    shifted = event(wf, clock, "crs-1", "resume", "2026-03-20", "09:00")
    added = wf.last_effects.added  # type: ignore[union-attr]
    assert added
    assert not {r.id for r in added} & set(original)
    assert_pending_matches_plan(wf, raw_engine, shifted)
    assert rows(raw_engine, "ipt_courses")[0]["pauses"] == [p.model_dump(mode="json") for p in shifted.pauses]
    assert len(shifted.pauses) == 2


def test_withdraw_cancels_every_pending_reminder_but_a_raised_alert(
    wf: Workflow, raw_engine: Engine, clock: Clock
) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    event(wf, clock, "crs-1", "record_measure", "2026-03-02", "10:55", {"instrument": "phq9", "score": 9, "item9": 2})
    new_course(wf, "crs-2", therapist="th-8")  # another course keeps its reminders
    course = event(wf, clock, "crs-1", "withdraw", "2026-03-05", "09:00")
    assert course.state.value == "withdrawn"
    assert set(reminder_status(raw_engine, "crs-2").values()) == {"pending"}
    (alert,) = wf.reminders(course="crs-1", status="pending")  # the safety alert must reach the therapist
    assert (alert.kind, alert.audience) == ("safety_alert", "therapist")
    assert set(reminder_status(raw_engine, "crs-1").values()) == {"cancelled", "pending"}


# ---------------------------------------------------------------- reads


def test_course_round_trips(wf: Workflow, db_url: str, clock: Clock) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    event(wf, clock, "crs-1", "record_measure", "2026-03-02", "10:55", {"instrument": "phq9", "score": 18, "item9": 1})
    event(wf, clock, "crs-1", "complete_intake", "2026-03-02", "11:00")
    event(wf, clock, "crs-1", "miss_session", "2026-03-09", "10:20")
    event(wf, clock, "crs-1", "hold_session", "2026-03-16", "10:50")  # session 3
    event(wf, clock, "crs-1", "set_focus", "2026-03-16", "10:55", {"areas": ["role_dispute", "grief"]})
    event(wf, clock, "crs-1", "start_intervention", "2026-03-16", "11:00")
    event(wf, clock, "crs-1", "pause", "2026-03-17", "09:00")
    returned = event(wf, clock, "crs-1", "resume", "2026-04-01", "09:00")  # across the change to BST

    assert wf.course("crs-1") == returned
    with Workflow(db_url, clock=clock) as other:  # another engine, nothing cached
        loaded = other.course("crs-1")
    assert loaded == returned
    assert loaded.model_dump(mode="json") == returned.model_dump(mode="json")
    assert (loaded.state.value, loaded.focus, loaded.current_focus) == ("intervention", ["role_dispute", "grief"],
                                                                        "role_dispute")  # fmt: skip
    assert [(s.number, s.status.value) for s in loaded.sessions] == [(1, "held"), (2, "missed"), (3, "held")]
    assert [h.event for h in loaded.history][-2:] == ["pause", "resume"]
    assert loaded.version == 10
    assert wf.plan("crs-1").sessions == expected_plan(wf, returned).sessions


def test_a_loaded_course_carries_its_alerts_stored_status(wf: Workflow, raw_engine: Engine, clock: Clock) -> None:
    """The one expected difference between a loaded course and the one ``apply`` returned:
    ``course()`` gives each alert the status the store keeps (as ``plan()`` and ``reminders()``
    do: what the daemon did with it); ``apply`` returns the core's view."""
    new_course(wf)
    event(wf, clock, "crs-1", "record_measure", "2026-03-01", "10:55", {"instrument": "phq9", "score": 18, "item9": 1})
    returned = event(wf, clock, "crs-1", "withdraw", "2026-03-01", "11:00")
    wf.dispatch([lambda e: None], now=clock.now)
    loaded = wf.course("crs-1")
    assert [a.status.value for a in loaded.alerts] == ["delivered"]
    assert loaded.model_copy(update={"alerts": returned.alerts}) == returned
    assert [a.model_copy(update={"status": "pending"}) for a in loaded.alerts] == returned.alerts


MEASURE_ITEM9 = {"instrument": "phq9", "score": 12, "item9": 1}


@pytest.mark.parametrize(
    ("events", "kinds"),
    [
        pytest.param(["record_measure", "miss_session", "miss_session"], ["safety_alert", "attendance_review"],
                     id="ids-in-order"),
        pytest.param(["miss_session", "miss_session", "record_measure"], ["attendance_review", "safety_alert"],
                     id="ids-out-of-order"),
    ],
)  # fmt: skip
def test_alerts_raised_at_one_instant_round_trip_in_order(
    wf: Workflow, clock: Clock, events: list[str], kinds: list[str]
) -> None:
    new_course(wf)
    clock.now = datetime(2026, 3, 9, 10, 50, tzinfo=UTC)  # sessions 1 and 2 have started
    for name in events:
        returned = wf.apply("crs-1", name, MEASURE_ITEM9 if name == "record_measure" else None)
    assert sorted(a.kind for a in returned.alerts) == sorted(kinds)
    assert returned.alerts == sorted(returned.alerts, key=lambda a: (a.due, a.id))
    loaded = wf.course("crs-1")
    assert loaded == returned  # alerts included, in the same (due, id) order


def test_reminders_filters_and_due_order(wf: Workflow, clock: Clock) -> None:
    new_course(wf, "crs-a")
    new_course(wf, "crs-b", start="2026-03-04", time="15:30")
    new_course(wf, "crs-c", start="2026-03-03", tz="America/New_York")
    event(wf, clock, "crs-c", "withdraw", "2026-03-01", "09:00")

    everything = wf.reminders()
    assert len(everything) == len({r.id for r in everything})
    assert everything == sorted(everything, key=lambda r: (r.due, r.id))
    assert {r.course for r in everything} == {"crs-a", "crs-b", "crs-c"}

    only_b = wf.reminders(course="crs-b")
    assert only_b and {r.course for r in only_b} == {"crs-b"}
    assert only_b == [r for r in everything if r.course == "crs-b"]

    start, until = everything[5].due, everything[-5].due
    window = wf.reminders(start=start, until=until)
    assert window == [r for r in everything if start <= r.due < until]
    assert window[0].due == start and all(r.due != until for r in window)
    assert wf.reminders(course="crs-a", until=until) == [r for r in everything if r.course == "crs-a" and r.due < until]
    assert wf.reminders(start=start) == [r for r in everything if r.due >= start]

    pending, cancelled = wf.reminders(status="pending"), wf.reminders(status="cancelled")
    assert {r.course for r in cancelled} == {"crs-c"} and {r.course for r in pending} == {"crs-a", "crs-b"}
    assert sorted(pending + cancelled, key=lambda r: (r.due, r.id)) == everything
    assert wf.reminders(course="crs-a", status="cancelled") == []
    assert wf.reminders(course="nope") == []
    assert all(r.due.utcoffset() == timedelta(0) for r in everything)


def test_an_unknown_course_id(wf: Workflow, raw_engine: Engine) -> None:
    new_course(wf)
    before = snapshot(raw_engine)
    calls = [
        lambda: wf.course("crs-nope"),
        lambda: wf.plan("crs-nope"),
        lambda: wf.apply("crs-nope", "hold_session"),
        lambda: wf.apply("crs-nope", "hold_session", retries=3),
    ]
    for call in calls:
        with pytest.raises(UnknownName, match="unknown course 'crs-nope'"):
            call()
    assert snapshot(raw_engine) == before


# ---------------------------------------------------------------- nothing partial


BAD_EVENTS: list[tuple[str, Any, type[Exception], str]] = [
    ("fly_away", None, UnknownName, "unknown event 'fly_away'"),
    ("start_intervention", None, Refused, "refused in state 'intake'"),
    ("record_measure", {"instrument": "phq9", "score": 30, "item9": 0}, InvalidInput, "score"),
    ("record_measure", {"instrument": "phq9", "score": "12", "item9": 0}, InvalidInput, "score"),
    ("set_focus", {"areas": ["grief"]}, Refused, "intake"),
    ("cancel_session", {"number": 99}, Refused, "session 99"),
]


def test_a_bad_event_writes_nothing(wf: Workflow, raw_engine: Engine, clock: Clock) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    before = snapshot(raw_engine)
    for name, data, error, fragment in BAD_EVENTS:
        with pytest.raises(error, match=fragment):
            wf.apply("crs-1", name, data)
    with pytest.raises(InvalidInput, match="before the course's last change"):
        wf.apply("crs-1", "hold_session", at=datetime(2026, 3, 1, tzinfo=UTC))
    assert snapshot(raw_engine) == before
    assert wf.course("crs-1").version == 2


def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(
    wf: Workflow, db_url: str, raw_engine: Engine, clock: Clock
) -> None:
    new_course(wf)
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    before = snapshot(raw_engine)
    for stale in (1, 3):
        with pytest.raises(ConflictError) as caught:
            wf.apply("crs-1", "complete_intake", expected_version=stale, retries=3)  # never retried
        assert (caught.value.course_id, caught.value.expected, caught.value.found) == ("crs-1", stale, 2)
        assert "another writer" in str(caught.value) and "\n" not in str(caught.value)
    assert snapshot(raw_engine) == before

    # read by one client, changed by another, then written by the first: refused
    seen = wf.course("crs-1").version
    with Workflow(db_url, clock=clock) as other:
        other.apply("crs-1", "complete_intake")
    changed = snapshot(raw_engine)
    clock.at("2026-03-09", "10:50")  # session 2 has started
    with pytest.raises(ConflictError):
        wf.apply("crs-1", "hold_session", expected_version=seen)
    assert snapshot(raw_engine) == changed
    assert wf.apply("crs-1", "hold_session", expected_version=seen + 1).version == seen + 2


def test_store_save_with_a_stale_course_writes_nothing(wf: Workflow, raw_engine: Engine, clock: Clock) -> None:
    """The check is in the UPDATE itself: ``save`` refuses a ``before`` that is no longer current."""
    new_course(wf)
    stale = wf.course("crs-1")
    event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50")
    protocol = wf.rules.protocol("ipt-16")
    after, effects = ipt_workflow.apply(stale, "complete_intake", clock.now, protocol, wf.rules.clinic)
    before = snapshot(raw_engine)
    with pytest.raises(ConflictError) as caught:
        wf.store.save(stale, after, expected_plan(wf, after), effects, clock.now)
    assert (caught.value.expected, caught.value.found) == (1, 2)
    assert snapshot(raw_engine) == before


# ---------------------------------------------------------------- CSV import


def write_csv(path: Path, lines: list[str], header: str = "client,therapist,protocol,start,time,tz,id") -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


GOOD_ROWS = [
    "CL-1,th-1,ipt-16,2026-03-02,10:00,Europe/London,imp-1",
    "CL-2,th-1,ipt-b-8,2026-03-03,14:00,Europe/Berlin,imp-2",
    "CL-3,th-2,ipt-g-8,2026-03-04,18:00,America/New_York,",
]
BAD_ROWS = {
    "CL-4,th-2,ipt-16,2026-02-30,10:00,Europe/London,imp-4": "start",
    "CL-5,th-2,ipt-99,2026-03-02,10:00,Europe/London,imp-5": "ipt-99",
    "CL-6,th-2,ipt-16,2026-03-02,10:00,Mars/Olympus,imp-6": "tz",
    "Jane Doe,th-2,ipt-16,2026-03-02,10:00,Europe/London,imp-7": "client",
    "CL-8,th-2,ipt-16,2026-03-02,25:00,Europe/London,imp-8": "time",
    "CL-10,,ipt-16,2026-03-02,10:00,Europe/London,imp-10": "therapist",
}
DUPLICATE_ID_ROW = "CL-9,th-2,ipt-16,2026-03-02,10:00,Europe/London,imp-1"  # the id of the first good row


def problem_lines(message: str, path: Path) -> list[tuple[int, str]]:
    """``(line, message)`` of each line of an import error, checked to read ``FILE:LINE: message``."""
    out = []
    for line in message.splitlines():
        where, _, what = line.partition(": ")
        file, _, number = where.rpartition(":")
        assert file == str(path) and number.isdigit() and what, line
        out.append((int(number), what))
    return out


def test_import_is_all_or_nothing_and_names_every_bad_row(wf: Workflow, raw_engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "courses.csv", [*GOOD_ROWS, *BAD_ROWS])
    with pytest.raises(InvalidInput) as caught:
        wf.import_csv(path)
    problems = problem_lines(str(caught.value), path)
    first_bad = len(GOOD_ROWS) + 2  # after the header and the good rows
    assert [n for n, _ in problems] == list(range(first_bad, first_bad + len(BAD_ROWS)))
    for (_, what), fragment in zip(problems, BAD_ROWS.values(), strict=True):
        assert fragment in what, what
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)


def test_import_refuses_an_id_used_twice_in_the_file(wf: Workflow, raw_engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "courses.csv", [*GOOD_ROWS, DUPLICATE_ID_ROW])
    with pytest.raises(InvalidInput) as caught:
        wf.import_csv(path)
    assert problem_lines(str(caught.value), path) == [(5, "id: 'imp-1' is also on line 2")]
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("early", [DUPLICATE_ID_ROW, "CL-11,th-2,ipt-16,2026-03-02,10:00"], ids=["id", "fields"])
def test_import_names_every_bad_row_even_with_an_early_problem(
    wf: Workflow, raw_engine: Engine, tmp_path: Path, early: str
) -> None:
    path = write_csv(tmp_path / "courses.csv", [*GOOD_ROWS, early, *BAD_ROWS])
    with pytest.raises(InvalidInput) as caught:
        wf.import_csv(path)
    first = len(GOOD_ROWS) + 2  # the early problem's line; the bad rows follow it
    assert [n for n, _ in problem_lines(str(caught.value), path)] == list(range(first, first + 1 + len(BAD_ROWS)))
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)


def test_import_names_bad_rows_in_different_chunks(wf: Workflow, raw_engine: Engine, tmp_path: Path) -> None:
    lines = bulk_lines(2500)
    lines[1] = lines[1].replace(",09:30,", ",9h30,")  # line 3
    lines[2398] = "CL-2398,th-1,ipt-16,2026-03-02,10:00,Europe/Londn,bulk-02398"  # line 2400
    path = write_csv(tmp_path / "courses.csv", lines)
    with pytest.raises(InvalidInput) as caught:
        wf.import_csv(path)
    assert [n for n, _ in problem_lines(str(caught.value), path)] == [3, 2400]
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)


def test_import_skip_bad_stores_the_good_rows_and_reports_the_rest(
    wf: Workflow, raw_engine: Engine, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "courses.csv", [*GOOD_ROWS, *BAD_ROWS, DUPLICATE_ID_ROW])
    report = wf.import_csv(path, skip_bad=True)
    assert (report.imported, report.rows) == (len(GOOD_ROWS), len(GOOD_ROWS) + len(BAD_ROWS) + 1)
    problems = problem_lines("\n".join(report.problems), path)
    assert sorted(n for n, _ in problems) == list(range(len(GOOD_ROWS) + 2, len(GOOD_ROWS) + len(BAD_ROWS) + 3))
    stored = {c.id: c for c in wf.courses()}
    assert len(stored) == 3 and {"imp-1", "imp-2"} <= set(stored)
    assert stored["imp-1"].client == "CL-1"  # the first row with the id, not the duplicate
    assert {c.protocol for c in stored.values()} == {"ipt-16", "ipt-b-8", "ipt-g-8"}
    assert {c.version for c in stored.values()} == {1}
    for course_id in stored:
        course = wf.course(course_id)
        assert_pending_matches_plan(wf, raw_engine, course)
        assert [h.event for h in course.history] == ["create"]
    # imported again (issue 15): the same rows are found, left alone and said so; nothing written
    before = snapshot(raw_engine)
    again = wf.import_csv(write_csv(tmp_path / "again.csv", GOOD_ROWS[:2]))
    assert (again.imported, again.existing, again.problems) == (0, 2, [])
    assert [(r.line, r.id, r.status) for r in again.courses] == [(2, "imp-1", "existing"), (3, "imp-2", "existing")]
    assert snapshot(raw_engine) == before
    # an id that is taken by another course is still refused
    other = GOOD_ROWS[0].replace("CL-1", "CL-99")
    with pytest.raises(InvalidInput, match="imp-1' already exists"):
        wf.import_csv(write_csv(tmp_path / "other.csv", [other]))
    assert snapshot(raw_engine) == before


def test_import_of_a_bad_header_writes_nothing(wf: Workflow, raw_engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "courses.csv", GOOD_ROWS, header="client,therapist,protocol,start,time,zone,id")
    with pytest.raises(InvalidInput) as caught:
        wf.import_csv(path)
    columns = "(columns: client, therapist, protocol, start, time, tz[, id, group])"
    header_problems = [(1, f"missing column 'tz' {columns}"), (1, f"unknown column 'zone' {columns}")]
    assert problem_lines(str(caught.value), path) == header_problems
    with pytest.raises(InvalidInput) as caught:  # not a bad row: no row can be read at all
        wf.import_csv(path, skip_bad=True)
    assert problem_lines(str(caught.value), path) == header_problems
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)


BULK_KINDS = [  # (protocol, time, tz) cycled through the bulk file; each start a different Monday
    ("ipt-16", "10:00", "Europe/London"),
    ("ipt-b-8", "09:30", "Europe/Berlin"),
    ("ipt-a-12", "16:00", "America/New_York"),
]
BULK_ROWS = 6000


def bulk_lines(count: int) -> list[str]:
    lines = []
    for i in range(count):
        protocol, hhmm, tz = BULK_KINDS[i % len(BULK_KINDS)]
        start = date(2026, 3, 2) + timedelta(weeks=(i // len(BULK_KINDS)) % 40)
        lines.append(f"CL-{i},th-{i},{protocol},{start},{hhmm},{tz},bulk-{i:05d}")  # one course a therapist: no clashes
    return lines


@pytest.fixture
def parallel_import(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records how many worker processes ``import_csv`` planned with (at least 2 here, even on
    a one-core machine, so the worker path is the one tested)."""
    used: list[int] = []
    real = importing._workers

    def workers(count: int, rules: ipt_workflow.Rulebook) -> int:
        used.append(max(real(count, rules), 2 if count >= importing.PARALLEL_FROM else 1))
        return used[-1]

    monkeypatch.setattr(importing, "_workers", workers)
    return used


def expected_reminders(wf: Workflow, lines: list[str]) -> dict[str, int]:
    """How many reminders each bulk course's plan has (planned once per distinct row shape)."""
    cache: dict[tuple[str, ...], int] = {}
    out = {}
    rules = wf.rules
    for line in lines:
        client, therapist, protocol, start, hhmm, tz, course_id = line.split(",")
        key = (protocol, start, hhmm, tz)
        if key not in cache:
            course = ipt_workflow.new_course(
                rules.protocol(protocol), rules.clinic, course_id="probe", client=client, therapist=therapist,
                start=date.fromisoformat(start), slot=hhmm, timezone=tz, now=T0,
            )  # fmt: skip
            cache[key] = len(expected_plan(wf, course).reminders)
        out[course_id] = cache[key]
    return out


def test_bulk_import_in_worker_processes_stores_every_course_with_its_reminders(
    wf: Workflow, raw_engine: Engine, tmp_path: Path, parallel_import: list[int]
) -> None:
    lines = bulk_lines(BULK_ROWS)
    report = wf.import_csv(write_csv(tmp_path / "bulk.csv", lines))
    assert parallel_import and parallel_import[0] >= 2
    assert (report.imported, report.rows, report.problems) == (BULK_ROWS, BULK_ROWS, [])
    wanted = expected_reminders(wf, lines)
    with raw_engine.connect() as conn:
        r, c, h = t.reminders.c, t.courses.c, t.history.c
        per_course = dict(conn.execute(select(r.course_id, func.count()).group_by(r.course_id)).all())
        courses = conn.execute(select(func.count(), func.min(c.version), func.max(c.version))).one()
        history = conn.execute(select(func.count(), func.count(func.distinct(h.course_id)))).one()
        statuses = conn.execute(select(r.status).distinct()).scalars().all()
    assert per_course == wanted
    assert tuple(courses) == (BULK_ROWS, 1, 1)
    assert tuple(history) == (BULK_ROWS, BULK_ROWS)
    assert statuses == ["pending"]
    sample = wf.course("bulk-04999")
    assert (sample.protocol, sample.client, sample.state.value) == (BULK_KINDS[4999 % 3][0], "CL-4999", "intake")
    assert_pending_matches_plan(wf, raw_engine, sample)


def test_bulk_import_with_one_bad_row_at_the_end_writes_nothing(
    wf: Workflow, raw_engine: Engine, tmp_path: Path, parallel_import: list[int]
) -> None:
    lines = bulk_lines(BULK_ROWS)
    lines[-1] = lines[-1].replace("2026-", "2026-13-", 1)  # line 6001: an impossible date
    path = write_csv(tmp_path / "bulk.csv", lines)
    with pytest.raises(InvalidInput) as caught:
        wf.import_csv(path)
    assert parallel_import and parallel_import[0] >= 2
    [problem] = str(caught.value).splitlines()
    assert problem.startswith(f"{path}:{BULK_ROWS + 1}: start"), problem
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)


# ---------------------------------------------------------------- embedding, schema, files, errors


def test_a_host_engine_is_used_and_left_open(db_url: str, clock: Clock) -> None:
    host = create_engine(sqlalchemy_url(db_url))
    try:
        with host.begin() as conn:
            conn.execute(text("CREATE TABLE clinic_staff (id INTEGER PRIMARY KEY, name VARCHAR(40))"))
            conn.execute(text("INSERT INTO clinic_staff VALUES (1, 'th-7')"))
        held = host.connect()  # a host connection checked out across the whole use
        pool = host.pool
        with Workflow(engine=host, clock=clock) as wf:
            assert wf.store.engine is host
            new_course(wf)
            assert event(wf, clock, "crs-1", "hold_session", "2026-03-02", "10:50").version == 2
        assert host.pool is pool  # not disposed
        assert held.execute(text("SELECT count(*) FROM ipt_courses")).scalar() == 1
        held.close()
        with host.connect() as conn:
            assert conn.execute(text("SELECT name FROM clinic_staff")).scalar() == "th-7"
            assert conn.execute(text("SELECT version FROM ipt_courses")).scalar() == 2
            assert "alembic_version" not in inspect(conn).get_table_names()  # the host's own Alembic table
        with Workflow(engine=host, clock=clock) as again:  # usable again after close
            assert again.course("crs-1").version == 2
    finally:
        host.dispose()


def test_the_schema_comes_from_alembic_and_upgrading_again_is_harmless(wf: Workflow, raw_engine: Engine) -> None:
    new_course(wf)
    with raw_engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {*TABLES, "ipt_meta", "ipt_alembic_version"} <= tables
        assert conn.execute(text("SELECT version_num FROM ipt_alembic_version")).scalars().all() == ["0010"]
        assert conn.execute(text("SELECT value FROM ipt_meta WHERE key = 'schema_version'")).scalar() == "1"
        indexes = {ix["name"] for ix in inspect(conn).get_indexes("ipt_reminders")}
        assert "ix_ipt_reminders_due" in indexes
    assert HEAD_REVISION == "0010"
    before = snapshot(raw_engine)
    upgrade(raw_engine)
    upgrade(raw_engine)
    with raw_engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM ipt_alembic_version")).scalars().all() == ["0010"]
        assert conn.execute(text("SELECT count(*) FROM ipt_meta WHERE key = 'schema_version'")).scalar() == 1
    assert snapshot(raw_engine) == before
    store = SqlStore(raw_engine, owns_engine=False)
    store.ensure_schema()
    assert store.load("crs-1").version == 1


def test_a_host_can_create_the_schema_before_the_first_workflow(db_url: str, raw_engine: Engine, clock: Clock) -> None:
    upgrade(raw_engine)
    assert counts(raw_engine) == dict.fromkeys(TABLES, 0)
    with Workflow(db_url, clock=clock) as wf:
        new_course(wf)
    assert counts(raw_engine)["ipt_courses"] == 1


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("form", ["path", "url"])
@pytest.mark.usefixtures("umask_022")
def test_the_sqlite_file_is_created_readable_by_its_owner_only(tmp_path: Path, clock: Clock, form: str) -> None:
    path = tmp_path / "new" / "dir" / "clinic.sqlite"
    with Workflow(str(path) if form == "path" else f"sqlite:///{path}", clock=clock) as wf:
        new_course(wf)
        with wf.store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if f.exists():
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def unreachable_messages() -> Iterator[tuple[str, str]]:
    yield "postgresql://ipt:s3cret-pw@127.0.0.1:1/clinic", "127.0.0.1:1/clinic"
    yield "postgresql://ipt:s3cret-pw@host.invalid/clinic", "host.invalid/clinic"


@pytest.mark.parametrize(("url", "shown"), list(unreachable_messages()))
def test_an_unreachable_database_is_a_store_error_without_the_password(url: str, shown: str) -> None:
    with pytest.raises(StoreError) as caught:
        Workflow(url)
    message = str(caught.value)
    assert shown in message and "***" in message
    assert "s3cret-pw" not in message
    assert "\n" not in message
    for noise in ("Traceback", "sqlalchemy", "Background on this error", "OperationalError", "[SQL"):
        assert noise not in message, message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("make", ["not a database", "a directory"])
def test_an_unusable_sqlite_file_is_a_store_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "clinic.sqlite"
    if make == "a directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not an SQLite file " * 40)
    with pytest.raises(StoreError, match=f"'sqlite:///{path}' cannot be used"):
        Workflow(str(path))


def test_an_sqlite_path_whose_directory_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreError, match="a-file"):
        Workflow(str(tmp_path / "a-file" / "clinic.sqlite"))


def test_workflow_apply_uses_the_clock_for_at(wf: Workflow, raw_engine: Engine, clock: Clock) -> None:
    new_course(wf)
    clock.now = datetime(2026, 3, 2, 10, 51, 7, tzinfo=UTC)
    wf.apply("crs-1", "hold_session")
    at = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    wf.apply("crs-1", "complete_intake", at=at)
    history = rows(raw_engine, "ipt_history")
    assert [h["at"] for h in history[1:]] == [clock.now, at]
    assert rows(raw_engine, "ipt_courses")[0]["updated_at"] == clock.now  # the clock, not ``at``
