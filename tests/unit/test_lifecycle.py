"""Every lifecycle path and refusal of SPEC §3, on the built-in protocols."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from ipt_workflow import (
    Course,
    CourseState,
    InvalidInput,
    Refused,
    SessionStatus,
    UnknownName,
    allowed_events,
    apply,
    load_rules,
    new_course,
    plan,
    why_not,
)
from ipt_workflow.core.lifecycle import lifecycle_for

RULES = load_rules()
POLICY = RULES.clinic
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def course(protocol_id: str = "ipt-16", start: date = date(2026, 3, 2)) -> Course:
    return new_course(
        RULES.protocol(protocol_id), POLICY, course_id="c1", client="CL-001", therapist="T-7",
        start=start, slot=time(10, 0), timezone="Europe/London", now=T0,
    )  # fmt: skip


def _start_of(c: Course, protocol: object, number: int | None) -> datetime:
    planned = [s for s in plan(c, protocol, POLICY).sessions if s.status is SessionStatus.planned]  # type: ignore[arg-type]
    chosen = [s for s in planned if number is None or s.number == number]
    return chosen[0].start if chosen else T0


class Run:
    """Apply events one after another, an hour apart unless told."""

    def __init__(self, protocol_id: str = "ipt-16") -> None:
        self.protocol = RULES.protocol(protocol_id)
        self.course = course(protocol_id)
        self.at = T0
        self.effects: list = []

    def __call__(self, event: str, data: dict | None = None, hours: float = 1) -> Course:
        self.at += timedelta(hours=hours)
        if event in ("hold_session", "miss_session"):  # recorded once the session has started
            self.at = max(self.at, _start_of(self.course, self.protocol, (data or {}).get("number")))
        self.course, effects = apply(self.course, event, self.at, self.protocol, POLICY, data)
        self.effects.append(effects)
        return self.course

    def hold(self, n: int = 1) -> Course:
        for _ in range(n):
            self("hold_session", hours=24 * 7)
        return self.course

    @property
    def alerts(self) -> list[str]:
        return [a.kind for a in self.course.alerts if a.audience == "therapist"]


def test_new_course_starts_in_intake_with_a_create_entry() -> None:
    c = course()
    assert c.state is CourseState.intake
    assert [(h.event, h.from_, h.to) for h in c.history] == [("create", None, CourseState.intake)]
    assert c.protocol == "ipt-16" and c.protocol_version == "1.0.0"
    assert c.planned_sessions == 12


def test_full_course_ipt16_from_intake_to_completed() -> None:
    run = Run()
    run("complete_intake")
    run.hold(2)
    run("set_focus", {"areas": ["role_transition"]})
    run("start_intervention")
    assert run.course.state is CourseState.intervention
    assert run.course.current_focus == "role_transition"
    run.hold(7)  # 9 held, 3 left = the termination window: the rule takes begin_termination
    assert run.course.state is CourseState.termination
    auto = [h for h in run.course.history if h.event == "begin_termination"]
    assert len(auto) == 1 and auto[0].rule == "termination.auto"
    assert auto[0].from_ is CourseState.intervention and auto[0].to is CourseState.termination
    run.hold(3)
    run("complete")
    c = run.course
    assert c.state is CourseState.completed
    held = [s for s in c.sessions if s.status is SessionStatus.held]
    assert [s.phase for s in held] == ["assessment"] * 2 + ["intervention"] * 7 + ["termination"] * 3
    follow_ups = [r for r in plan(c, run.protocol, POLICY).reminders if r.kind == "follow_up"]
    assert len(follow_ups) == 2 and all(r.audience == "therapist" and r.session is None for r in follow_ups)
    completed = c.completed_at
    assert completed is not None
    assert sorted((r.due - completed).days for r in follow_ups) == pytest.approx([84, 364], abs=1)


def test_every_history_entry_names_event_time_and_rule() -> None:
    run = Run()
    run("complete_intake")
    run("record_measure", {"instrument": "phq9", "score": 15, "item9": 0})
    for h in run.course.history:
        assert h.event and h.at.tzinfo is not None and h.to
    assert run.course.history[-1].data == {"instrument": "phq9", "score": 15, "item9": 0}
    assert run.course.history[-1].rule is None


@pytest.mark.parametrize(
    ("event", "state", "fragment"),
    [
        ("start_intervention", "intake", "not allowed in this state"),
        ("complete", "intake", "not allowed in this state"),
        ("retarget", "intake", "not allowed in this state"),
        ("resume", "intake", "not allowed in this state"),
        ("set_focus", "intake", "not allowed in this state"),
    ],
)
def test_events_the_state_does_not_allow_are_refused(event: str, state: str, fragment: str) -> None:
    c = course()
    data = {"areas": ["grief"]} if event == "set_focus" else None
    with pytest.raises(Refused) as err:
        apply(c, event, T0 + timedelta(hours=1), RULES.protocol("ipt-16"), POLICY, data)
    message = str(err.value)
    assert f"'{event}'" in message and f"'{state}'" in message and fragment in message
    assert err.value.event == event and err.value.state == state


def test_start_intervention_needs_a_focus_and_min_assessment_sessions() -> None:
    run = Run()
    run("complete_intake")
    with pytest.raises(Refused, match="no focus set"):
        run("start_intervention")
    run("set_focus", {"areas": ["grief"]})
    with pytest.raises(Refused) as err:
        run("start_intervention")
    assert "assessment_held >= assessment_min" in str(err.value)
    assert "assessment_held=0" in str(err.value) and "assessment_min=1" in str(err.value)
    run.hold(1)
    assert run("start_intervention").state is CourseState.intervention


def test_refused_event_changes_nothing() -> None:
    run = Run()
    before = run.course
    with pytest.raises(Refused):
        run("complete")
    assert run.course is before and run.course.history == before.history


def test_resolve_focus_retargets_to_the_next_ranked_area_then_terminates_at_the_focus_limit() -> None:
    run = Run()
    run("complete_intake")
    run.hold(1)
    run("set_focus", {"areas": ["role_dispute", "grief", "role_transition"]})
    run("start_intervention")
    run.hold(1)
    run("resolve_focus")
    assert run.course.state is CourseState.retargeting
    run("retarget")
    c = run.course
    assert c.state is CourseState.intervention and c.current_focus == "grief"
    assert c.foci_worked == ["role_dispute", "grief"]
    entry = c.history[-1]
    assert entry.event == "retarget"
    assert entry.data == {"renegotiation": True, "from_focus": "role_dispute", "to_focus": "grief"}
    run("resolve_focus")  # focus limit 2 reached: straight to termination
    assert run.course.state is CourseState.termination


def test_resolve_focus_with_a_single_area_goes_to_termination() -> None:
    run = Run()
    run("complete_intake")
    run.hold(1)
    run("set_focus", {"areas": ["grief"]})
    run("start_intervention")
    run("resolve_focus")
    assert run.course.state is CourseState.termination


def test_resolve_focus_does_not_retarget_when_too_few_sessions_remain() -> None:
    run = Run()
    run("complete_intake")
    run.hold(1)
    run("set_focus", {"areas": ["grief", "role_dispute"]})
    run("start_intervention")
    run.hold(5)  # 6 held of 12: 6 remain; needs termination 3 + retarget 3 = 6
    run("resolve_focus")
    assert run.course.state is CourseState.retargeting
    run2 = Run()
    run2("complete_intake")
    run2.hold(1)
    run2("set_focus", {"areas": ["grief", "role_dispute"]})
    run2("start_intervention")
    run2.hold(6)  # 5 remain
    run2("resolve_focus")
    assert run2.course.state is CourseState.termination


def test_set_focus_in_retargeting_reranks_and_retarget_refused_without_another_area() -> None:
    run = Run()
    run("complete_intake")
    run.hold(1)
    run("set_focus", {"areas": ["grief", "role_dispute"]})
    run("start_intervention")
    run("resolve_focus")
    assert run.course.state is CourseState.retargeting
    run("set_focus", {"areas": ["grief"]})
    with pytest.raises(Refused, match="no further ranked problem area"):
        run("retarget")
    run("set_focus", {"areas": ["grief", "interpersonal_deficits"]})
    assert run("retarget").current_focus == "interpersonal_deficits"


def test_pause_and_resume_return_to_the_prior_state() -> None:
    for state_events in ([], ["complete_intake"]):
        run = Run()
        for e in state_events:
            run(e)
        prior = run.course.state
        run("pause")
        assert run.course.state is CourseState.paused
        with pytest.raises(Refused, match="not allowed"):
            run("hold_session")
        run("record_measure", {"instrument": "phq9", "score": 9, "item9": 0})  # allowed in any state
        run("resume", hours=24 * 14)
        assert run.course.state is prior
        assert run.course.history[-1].from_ is CourseState.paused and run.course.history[-1].to is prior


def test_paused_course_has_no_reminders_for_planned_sessions() -> None:
    run = Run()
    run("complete_intake")
    run("pause")
    kinds = {r.kind for r in plan(run.course, run.protocol, POLICY).reminders}
    assert "session_reminder" not in kinds and "measure_due" not in kinds
    cancelled = run.effects[-1].cancelled
    assert len(cancelled) > 10


def test_withdraw_cancels_every_pending_reminder_and_is_final() -> None:
    run = Run()
    run("complete_intake")
    before = {r.id for r in plan(run.course, run.protocol, POLICY).reminders}
    run("withdraw")
    assert run.course.state is CourseState.withdrawn
    assert set(run.effects[-1].cancelled) == before
    assert plan(run.course, run.protocol, POLICY).reminders == []
    for event in ("resume", "hold_session", "complete_intake", "pause"):
        with pytest.raises(Refused):
            run(event)


def test_withdraw_from_paused_is_allowed() -> None:
    run = Run()
    run("pause")
    assert run("withdraw").state is CourseState.withdrawn


def test_complete_only_from_termination() -> None:
    run = Run()
    run("complete_intake")
    with pytest.raises(Refused, match="'assessment'"):
        run("complete")


def test_assessment_limit_alert_when_max_reached_without_a_focus() -> None:
    run = Run()
    run("complete_intake")
    run.hold(2)
    assert "assessment_limit" not in run.alerts
    run.hold(1)
    assert run.alerts == ["assessment_limit"]
    alert = run.course.alerts[0]
    assert alert.audience == "therapist" and alert.rule == "assessment.limit" and alert.due == run.at
    assert alert.id in {r.id for r in run.effects[-1].added}


def test_brief_protocol_advances_itself_after_engagement_and_assessment() -> None:
    run = Run("ipt-b-8")
    run.hold(1)  # the engagement session
    assert run.course.state is CourseState.assessment
    assert run.course.history[-1].rule == "intake.after-engagement"
    run("set_focus", {"areas": ["role_dispute"]})
    run.hold(2)
    assert run.course.state is CourseState.intervention
    assert run.course.history[-1].event == "start_intervention"
    assert run.course.history[-1].rule == "assessment.auto-advance"
    assert [s.phase for s in run.course.sessions] == ["intake", "assessment", "assessment"]


def test_safety_alert_is_immediate_for_item9_at_least_1() -> None:
    run = Run()
    run("record_measure", {"instrument": "phq9", "score": 7, "item9": 0})
    assert "safety_alert" not in run.alerts
    run("record_measure", {"instrument": "phq9", "score": 7, "item9": 1})
    alert = next(a for a in run.course.alerts if a.kind == "safety_alert")
    assert alert.due == run.at and alert.audience == "therapist" and alert.rule == "safety.item9"
    assert alert in run.effects[-1].added


def test_non_response_review_by_week_8_once() -> None:
    run = Run()
    run("record_measure", {"instrument": "phq9", "score": 20, "item9": 0})
    run("record_measure", {"instrument": "phq9", "score": 12, "item9": 0}, hours=24 * 30)  # week 5
    assert "non_response_review" not in run.alerts
    run("record_measure", {"instrument": "phq9", "score": 12, "item9": 0}, hours=24 * 28)  # week 9: 40 % drop
    assert run.alerts.count("non_response_review") == 1
    run("record_measure", {"instrument": "phq9", "score": 13, "item9": 0}, hours=24 * 7)
    assert run.alerts.count("non_response_review") == 1


def test_response_by_week_8_raises_no_review() -> None:
    run = Run()
    run("record_measure", {"instrument": "phq9", "score": 20, "item9": 0})
    run("record_measure", {"instrument": "phq9", "score": 6, "item9": 0}, hours=24 * 60)
    assert "non_response_review" not in run.alerts


def test_attendance_review_after_2_and_discharge_review_after_3_consecutive_misses() -> None:
    run = Run()
    run("complete_intake")
    run("miss_session")
    run.hold(1)  # resets the run
    run("miss_session")
    assert run.alerts == []
    run("cancel_session")  # a cancellation neither counts nor breaks the run
    run("miss_session")
    assert run.alerts == ["attendance_review"]
    run("miss_session")  # 12 + 4 missed + 1 cancelled entries > 16: this miss cannot be replaced
    assert run.alerts[0] == "attendance_review"
    assert sorted(run.alerts[1:]) == ["discharge_review", "plan_limit"]  # same instant: (due, id) order
    missed = [s for s in run.course.sessions if s.status is SessionStatus.missed]
    assert len(missed) == 4


def test_hold_with_no_planned_session_left_is_refused() -> None:
    run = Run("ipt-g-8")
    for _ in range(9):
        run("miss_session")
    with pytest.raises(Refused, match="no planned session left"):
        run("hold_session")


def test_cancel_a_named_future_session() -> None:
    run = Run()
    run("cancel_session", {"number": 5})
    five = next(s for s in run.course.sessions if s.number == 5)
    assert five.status is SessionStatus.cancelled
    sessions = plan(run.course, run.protocol, POLICY).sessions
    assert [s.number for s in sessions] == list(range(1, 14))
    with pytest.raises(Refused, match="session 5 is not a planned session"):
        run("cancel_session", {"number": 5})


def test_unknown_event_and_invalid_data_are_named() -> None:
    run = Run()
    with pytest.raises(UnknownName, match="unknown event 'hold'"):
        run("hold")
    with pytest.raises(InvalidInput, match=r"score: Input should be less than or equal to 27 \(got 28\)"):
        run("record_measure", {"instrument": "phq9", "score": 28, "item9": 0})
    with pytest.raises(InvalidInput, match=r"item9: Input should be less than or equal to 3 \(got 4\)"):
        run("record_measure", {"instrument": "phq9", "score": 10, "item9": 4})
    with pytest.raises(InvalidInput, match="instrument"):
        run("record_measure", {"instrument": "gad7", "score": 10, "item9": 0})
    with pytest.raises(InvalidInput, match="unknown field"):
        run("pause", {"reason": "holiday"})
    run("complete_intake")
    with pytest.raises(UnknownName, match="unknown problem area 'money'"):
        run("set_focus", {"areas": ["grief", "money"]})
    with pytest.raises(InvalidInput, match="ranked twice"):
        run("set_focus", {"areas": ["grief", "grief"]})


def test_an_event_before_the_last_change_is_refused() -> None:
    run = Run()
    run("complete_intake")
    with pytest.raises(InvalidInput, match="before the course's last change"):
        run("set_focus", {"areas": ["grief"]}, hours=-2)


def test_naive_at_is_refused() -> None:
    with pytest.raises(InvalidInput, match="has no UTC offset"):
        apply(course(), "complete_intake", datetime(2026, 3, 2, 9), RULES.protocol("ipt-16"), POLICY)


def test_client_reference_must_not_look_like_a_name() -> None:
    with pytest.raises(InvalidInput, match="not a pseudonymous reference"):
        new_course(
            RULES.protocol("ipt-16"), POLICY, course_id="c1", client="Jane Doe", therapist="T-7",
            start=date(2026, 3, 2), slot=time(10, 0), timezone="Europe/London", now=T0,
        )  # fmt: skip


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'Europe/Londn' is not an IANA time zone"):
        new_course(
            RULES.protocol("ipt-16"), POLICY, course_id="c1", client="CL-1", therapist="T-7",
            start=date(2026, 3, 2), slot=time(10, 0), timezone="Europe/Londn", now=T0,
        )  # fmt: skip


def test_allowed_events_and_why_not_answer_without_raising() -> None:
    c = course()
    assert "complete_intake" in allowed_events(c, RULES.protocol("ipt-16"))
    assert "start_intervention" not in allowed_events(c, RULES.protocol("ipt-16"))
    reason = why_not(c, "start_intervention", RULES.protocol("ipt-16"), POLICY, T0 + timedelta(hours=1))
    assert reason is not None and "intake" in reason
    assert why_not(c, "complete_intake", RULES.protocol("ipt-16"), POLICY, T0 + timedelta(hours=1)) is None


def test_one_machine_per_protocol_shared_by_all_courses() -> None:
    p = RULES.protocol("ipt-16")
    assert lifecycle_for(p) is lifecycle_for(p)
    assert lifecycle_for(p) is not lifecycle_for(RULES.protocol("ipt-b-8"))
    assert lifecycle_for(p).machine.models == []  # never add_model-ed


@pytest.mark.parametrize(
    ("zone", "start", "at", "week"),
    [
        # London springs forward on 2026-03-29: the Monday 10:00 BST three weeks on is week 4.
        ("Europe/London", date(2026, 3, 9), datetime(2026, 3, 30, 9, 0, tzinfo=UTC), 4),
        ("Europe/London", date(2026, 3, 9), datetime(2026, 3, 30, 8, 59, tzinfo=UTC), 3),
        # Lord Howe moves its clocks back by 30 minutes on 2026-04-05.
        ("Australia/Lord_Howe", date(2026, 3, 30), datetime(2026, 4, 5, 23, 30, tzinfo=UTC), 2),
        ("Australia/Lord_Howe", date(2026, 3, 30), datetime(2026, 4, 5, 23, 29, tzinfo=UTC), 1),
    ],
)
def test_the_week_fact_counts_weeks_on_the_wall_clock(zone: str, start: date, at: datetime, week: int) -> None:
    from ipt_workflow.core.lifecycle import facts

    c = new_course(
        RULES.protocol("ipt-16"), POLICY, course_id="c1", client="CL-001", therapist="T-7",
        start=start, slot=time(10, 0), timezone=zone, now=T0,
    )  # fmt: skip
    assert facts(c, RULES.protocol("ipt-16"), POLICY, "record_measure", {}, at)["week"] == week
