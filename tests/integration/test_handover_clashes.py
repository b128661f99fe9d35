"""A course handed over (``change_therapist`` from session n, SPEC §9) books each session under
its own therapist: the sessions before n still hold the previous therapist, so the clash check
finds that course under both therapists (``ipt_course_therapists``), on SQLite and PostgreSQL.

Course A (th-1, Mondays 10:00 London from 2027-01-04: session 3 on 2027-01-18, 5 on
2027-02-01, 6 on 2027-02-08) is handed to th-2 from session 5.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text

from ipt_workflow import InvalidInput, ScheduleClash, Workflow
from ipt_workflow.storage import schema as t
from ipt_workflow.storage.sql import SqlStore

from .test_store import Clock

LONDON = ZoneInfo("Europe/London")


def london(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=LONDON).astimezone(UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(london("2026-12-01", "09:00"))


@pytest.fixture
def wf(db_url: str, clock: Clock) -> Iterator[Workflow]:
    with Workflow(db_url, clock=clock) as workflow:
        yield workflow


def create(wf: Workflow, course_id: str, start: str, therapist: str, time: str = "10:00") -> None:
    wf.create_course(course_id=course_id, client=f"CL-{course_id}", start=start, time=time, tz="Europe/London",
                     therapist=therapist)  # fmt: skip


def handed_over(engine: Engine) -> list[tuple[str, str]]:
    c = t.course_therapists.c
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(c.course_id, c.therapist).order_by(c.course_id, c.therapist))]


def course_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.courses.c.id).order_by(t.courses.c.id)).scalars())


@pytest.fixture
def handover(wf: Workflow) -> Workflow:
    create(wf, "A", "2027-01-04", "th-1")
    course = wf.apply("A", "change_therapist", {"therapist": "th-2", "from": 5})
    assert course.therapist == "th-2"
    who = {s.number: s.therapist for s in wf.plan("A").sessions[:6]}
    assert who == {1: "th-1", 2: "th-1", 3: "th-1", 4: "th-1", 5: "th-2", 6: "th-2"}
    return wf


def test_the_previous_therapist_stays_booked_for_the_sessions_before_the_handover(
    handover: Workflow, raw_engine: Engine
) -> None:
    assert handed_over(raw_engine) == [("A", "th-1")]
    with pytest.raises(ScheduleClash) as refused:
        create(handover, "B", "2027-01-18", "th-1")
    assert str(refused.value) == "therapist th-1 is booked Mon 2027-01-18 10:00–10:50 GMT (course A, session 3)"
    assert course_ids(raw_engine) == ["A"]
    create(handover, "D", "2027-02-01", "th-1")  # from session 5 on A no longer holds th-1
    assert course_ids(raw_engine) == ["A", "D"]


def test_the_new_therapist_is_booked_from_the_handover_only(handover: Workflow, raw_engine: Engine) -> None:
    with pytest.raises(ScheduleClash) as refused:
        create(handover, "C", "2027-02-08", "th-2")
    assert str(refused.value) == "therapist th-2 is booked Mon 2027-02-08 10:00–10:50 GMT (course A, session 6)"
    # th-2 is free at A's session 3: a one-off move of E's first session there books it
    create(handover, "E", "2027-01-18", "th-2", time="12:00")
    moved = handover.apply("E", "reschedule_session", {"number": 1, "start": "2027-01-18T10:00"})
    assert [a.kind for a in moved.alerts if a.kind == "schedule_conflict"] == []
    assert handover.plan("E").sessions[0].start == london("2027-01-18", "10:00")
    assert course_ids(raw_engine) == ["A", "E"]


def test_an_import_names_the_therapist_of_the_session_in_the_way(handover: Workflow, tmp_path: Path) -> None:
    path = tmp_path / "courses.csv"
    path.write_text("client,therapist,protocol,start,time,tz,id\n"
                    "CL-1,th-2,ipt-16,2027-02-08,10:00,Europe/London,F\n"
                    "CL-2,th-1,ipt-16,2027-01-18,10:00,Europe/London,G\n")  # fmt: skip
    with pytest.raises(InvalidInput) as refused:
        handover.import_csv(path)
    assert str(refused.value).splitlines() == [
        f"{path}:2: therapist th-2 is booked Mon 2027-02-08 10:00–10:50 GMT (course A, session 6)",
        f"{path}:3: therapist th-1 is booked Mon 2027-01-18 10:00–10:50 GMT (course A, session 3)",
    ]


def test_the_stored_bookings_name_each_sessions_therapist(handover: Workflow) -> None:
    store = handover.store
    booked = store.booked({"th-1"}, timedelta(0))
    assert [(b.course, b.session, b.therapist) for b in booked] == [("A", n, "th-1") for n in (1, 2, 3, 4)]
    second = {(b.course, b.session) for b in store.booked({"th-2"}, timedelta(0))}
    assert ("A", 4) not in second and ("A", 5) in second


def test_the_side_row_goes_once_the_previous_therapists_sessions_are_past(
    handover: Workflow, clock: Clock, raw_engine: Engine
) -> None:
    for day in ("2027-01-04", "2027-01-11", "2027-01-18"):
        clock.at(day, "11:00")
        handover.apply("A", "hold_session")
    assert handed_over(raw_engine) == [("A", "th-1")]
    clock.at("2027-01-25", "11:00")
    handover.apply("A", "hold_session")
    assert handed_over(raw_engine) == []
    assert handover.store.booked({"th-1"}, timedelta(0)) == []


def test_upgrading_to_0006_fills_in_the_courses_handed_over_before(handover: Workflow, raw_engine: Engine) -> None:
    with raw_engine.begin() as conn:  # the database as revision 0005 left it
        conn.execute(text("DROP TABLE ipt_course_therapists"))
        conn.execute(text("ALTER TABLE ipt_courses DROP COLUMN rules_fingerprint"))  # added by 0008
        conn.execute(text("DROP INDEX ix_ipt_courses_group"))  # 0007: groups
        conn.execute(text("ALTER TABLE ipt_courses DROP COLUMN group_id"))
        conn.execute(text("DROP TABLE ipt_groups"))
        conn.execute(text("DROP TABLE ipt_ingested"))  # 0009: FHIR ingest
        conn.execute(text("ALTER TABLE ipt_digests DROP COLUMN site"))  # 0010: digest site
        conn.execute(text("UPDATE ipt_alembic_version SET version_num = '0005'"))
    store = SqlStore(raw_engine, owns_engine=False)
    store.ensure_schema()
    assert handed_over(raw_engine) == [("A", "th-1")]
    assert [b.session for b in store.booked({"th-1"}, timedelta(0))] == [1, 2, 3, 4]
