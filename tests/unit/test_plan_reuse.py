"""A plan reused instead of made again (issue 15, item 5): ``plans_alike`` (an event that
changed nothing the planner reads keeps its plan) and ``stored_plan`` (a course read again,
equal in every planning input, gets the plan made before). Both must give exactly what
``plan`` gives."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from ipt_workflow import ClinicPolicy, Course, Protocol, load_rules, new_course, plan
from ipt_workflow.core.lifecycle import apply, apply_planned
from ipt_workflow.core.plan_reuse import plans_alike, stored_plan

RULES = load_rules()
CLINIC: ClinicPolicy = RULES.clinic
IPT16: Protocol = RULES.protocol("ipt-16")
CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MEASURE = {"instrument": "phq9", "score": 12, "item9": 0}


def course(course_id: str = "c-reuse") -> Course:
    return new_course(
        IPT16, CLINIC, course_id=course_id, client="client-42", therapist="th-7",
        start=date(2026, 1, 12), slot=time(10, 0), timezone="Europe/London", now=CREATED,
    )  # fmt: skip


def reread(c: Course) -> Course:
    """The course as a store would read it back: equal values, new objects."""
    return Course.model_validate(c.model_dump() | {"absences": c.absences, "group_plan": c.group_plan})


def test_a_measure_keeps_the_plan_and_its_effects_are_empty() -> None:
    c = course()
    before = plan(c, IPT16, CLINIC)
    after, effects, p = apply_planned(c, "record_measure", CREATED + timedelta(hours=1), IPT16, CLINIC, MEASURE, before)
    assert plans_alike(c, after)
    assert p is before
    assert p == plan(after, IPT16, CLINIC)
    assert (effects.added, effects.cancelled, [h.event for h in effects.history]) == ([], [], ["record_measure"])


def test_an_event_that_changes_a_planning_input_plans_again() -> None:
    c, _ = apply(course(), "record_measure", CREATED + timedelta(hours=1), IPT16, CLINIC, MEASURE)
    assert plans_alike(course(), c) is False  # new objects: nothing is taken as alike
    before = plan(c, IPT16, CLINIC)
    held, _, p = apply_planned(c, "hold_session", datetime(2026, 1, 12, 11, 0, tzinfo=UTC), IPT16, CLINIC,
                               {"number": 1}, before)  # fmt: skip
    assert not plans_alike(c, held)
    assert p is not before
    assert p == plan(held, IPT16, CLINIC)


def test_a_safety_alert_is_a_planning_input() -> None:
    c = course()
    before = plan(c, IPT16, CLINIC)
    alert = {"instrument": "phq9", "score": 14, "item9": 2}
    after, effects, p = apply_planned(c, "record_measure", CREATED + timedelta(hours=1), IPT16, CLINIC, alert, before)
    assert [a.kind for a in after.alerts] == ["safety_alert"]
    assert not plans_alike(c, after)
    assert p == plan(after, IPT16, CLINIC)
    assert [r.kind for r in effects.added] == ["safety_alert"]


def test_stored_plan_is_plan_and_is_reused_for_an_equal_course() -> None:
    c = course("c-stored")
    first = stored_plan(reread(c), IPT16, CLINIC)
    assert first == plan(c, IPT16, CLINIC)
    measured, _ = apply(c, "record_measure", CREATED + timedelta(hours=1), IPT16, CLINIC, MEASURE)
    again = stored_plan(reread(measured), IPT16, CLINIC)
    assert again == first
    assert again.sessions is not first.sessions and again.reminders is not first.reminders  # fresh lists
    assert again.sessions[0] is first.sessions[0]  # reused, not made again
    held, _ = apply(measured, "hold_session", datetime(2026, 1, 12, 11, 0, tzinfo=UTC), IPT16, CLINIC, {"number": 1})
    replanned = stored_plan(reread(held), IPT16, CLINIC)
    assert replanned == plan(held, IPT16, CLINIC) != first


def test_stored_plan_under_other_rules_plans_again() -> None:
    c = reread(course("c-rules"))
    other = ClinicPolicy.model_validate(CLINIC.model_dump(mode="json") | {"holidays": None})
    assert stored_plan(c, IPT16, CLINIC) == plan(c, IPT16, CLINIC)
    assert stored_plan(c, IPT16, other) == plan(c, IPT16, other)
