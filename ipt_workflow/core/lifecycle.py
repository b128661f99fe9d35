"""The course lifecycle: one ``transitions`` machine per protocol, built once and shared
by every course (``Machine(model=None)``, triggered on a small adapter, never added), with
guards from the protocol's CEL conditions and rules that emit alerts or take transitions.

``apply(course, event, at, protocol, policy, data)`` returns the new course and its effects;
it never mutates its input and never reads the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from transitions import EventData, Machine

from .errors import InvalidInput, Refused, UnknownName
from .events import EVENTS, TABLE
from .model import (
    ACTIVE_STATES,
    EVENT_DATA,
    Course,
    CourseState,
    Effects,
    HistoryEntry,
    Measurement,
    NoData,
    Pause,
    Plan,
    Reminder,
    ReminderStatus,
    SessionStatus,
    reference_problem,
)
from .moves import RECORDING, change_slot, change_therapist, record_session, reschedule, with_notice
from .plan_reuse import plans_alike
from .planner import counts, plan, reminder_id
from .policy import ClinicPolicy
from .protocol import Condition, EvaluationError, Protocol
from .values import naive_problem
from .wallclock import check_year, local_instant, zone

S = CourseState
_MAX_RULE_DEPTH = 8


class _Adapter:
    """What the shared machine drives: a state, the facts guards read, and why it refused."""

    __slots__ = ("error", "facts", "failed", "resume_to", "state")

    def __init__(self, state: str, facts: Mapping[str, Any], resume_to: str | None) -> None:
        self.state = state
        self.facts = facts
        self.resume_to = resume_to
        self.failed: Condition | None = None
        self.error: str | None = None  # a guard that could not be evaluated, and why


def _guarded(condition: Condition, key: str) -> Callable[[EventData], bool]:
    def check(ev: EventData) -> bool:
        model = ev.model
        assert isinstance(model, _Adapter)
        try:
            ok = condition.check(model.facts)
        except EvaluationError as exc:
            model.error = f"guard '{key}': condition '{condition.source}' cannot be evaluated: {exc}"
            return False
        if not ok:
            model.failed = condition
        return ok

    return check


def _resume_to(state: str) -> Callable[[EventData], bool]:
    return lambda ev: bool(getattr(ev.model, "resume_to", None) == state)


class Lifecycle:
    """The machine of one protocol. Build once (``lifecycle_for``) and share."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.definition = self._definition(protocol)
        self._sources: dict[str, frozenset[str]] = {}
        self.machine = Machine(
            model=None,
            states=[s.value for s in S],
            transitions=self.definition,
            initial="intake",
            auto_transitions=False,
            send_event=True,
        )

    @staticmethod
    def _definition(protocol: Protocol) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for step in TABLE:
            conditions: list[Callable[[EventData], bool]] = []
            guard = protocol.guard(step.guard) if step.guard else None
            if guard is not None and step.guard is not None:
                conditions.append(_guarded(guard, step.guard))
            if step.event == "resume":
                conditions.append(_resume_to(str(step.dest)))
            rows.append(
                {
                    "trigger": step.event,
                    "source": list(step.sources),
                    "dest": step.dest,
                    "conditions": conditions,
                }
            )
        return rows

    def sources(self, event: str) -> frozenset[str]:
        """The states ``event`` has a transition from (worked out once per event)."""
        found = self._sources.get(event)
        if found is None:
            found = self._sources[event] = frozenset(self.machine.events[event].transitions)
        return found

    def trigger(self, event: str, state: str, facts: Mapping[str, Any], resume_to: str | None) -> tuple[bool, _Adapter]:
        """Run ``event`` from ``state``; (taken, adapter with the new state or the failed guard)."""
        adapter = _Adapter(state, facts, resume_to)
        taken = bool(self.machine.events[event].trigger(adapter))
        return taken, adapter


class _Unevaluable(Refused):
    """Refused because a guard or rule condition could not be evaluated on the course's facts:
    never taken as "the rule's transition is not possible now"."""


_MACHINES: dict[int, tuple[Protocol, Lifecycle]] = {}


def lifecycle_for(protocol: Protocol) -> Lifecycle:
    """The shared machine of ``protocol``, built on first use."""
    entry = _MACHINES.get(id(protocol))
    if entry is None or entry[0] is not protocol:
        entry = (protocol, Lifecycle(protocol))
        _MACHINES[id(protocol)] = entry
    return entry[1]


def new_course(
    protocol: Protocol,
    policy: ClinicPolicy,
    *,
    course_id: str,
    client: str,
    therapist: str,
    start: Any,
    now: datetime,
    time: Any = None,
    tz: str | None = None,
    slot: Any = None,
    timezone: str | None = None,
) -> Course:
    """A new course in ``intake``, its history opened at ``now``: first session on ``start``
    at wall-clock ``time`` in zone ``tz`` (``slot`` and ``timezone``, the model's field names,
    are accepted too). Raises InvalidInput naming the parameter."""
    slot = time if time is not None else slot
    timezone = tz if tz is not None else timezone
    if slot is None or timezone is None:
        raise InvalidInput(f"{'time' if slot is None else 'tz'}: missing")
    try:
        zone(timezone)
    except InvalidInput as exc:
        raise InvalidInput(f"tz: {exc}") from None
    now = _aware(now, "now")
    try:
        course = Course(
            id=course_id,
            client=client,
            therapist=therapist,
            protocol=protocol.id,
            protocol_version=protocol.version,
            timezone=timezone,
            start=start,
            slot=slot,
            state=S.intake,
            planned_sessions=protocol.sessions.planned,
            created_at=now.astimezone(UTC),
            history=[HistoryEntry.model_validate({"event": "create", "at": now, "from": None, "to": S.intake})],
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        if err["type"] == "string_pattern_mismatch":  # a client reference is never repeated
            raise InvalidInput(reference_problem(str(err["input"]), field, echo=field != "client")) from None
        field = {"slot": "time", "timezone": "tz"}.get(field, field)  # the parameters' names
        raise InvalidInput(f"{field}: {err['msg']}") from None
    check_year(course.start, "start")
    return course


def _aware(value: datetime, where: str) -> datetime:
    """``value`` in UTC; raises InvalidInput when it is naive or outside the years allowed."""
    if value.tzinfo is None:
        raise naive_problem(where, value)
    check_year(value, where)
    return value.astimezone(UTC)


def facts(
    course: Course,
    protocol: Protocol,
    policy: ClinicPolicy,
    event: str,
    data: Mapping[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """The fact names of ``protocol.FACTS`` for ``course`` as an event at ``at`` sees it."""
    c = counts(course, protocol)
    tz = zone(course.timezone)
    first = local_instant(course.start, course.slot, tz)
    # Weeks on the wall clock, so the hour a clock change takes or gives never moves a week.
    wall = at.astimezone(tz).replace(tzinfo=None) - first.replace(tzinfo=None)
    week = wall // timedelta(weeks=1) + 1 if at >= first else 0
    phq = [m.score for m in course.measurements if m.instrument == "phq9"]
    baseline = phq[0] if phq else -1
    latest = phq[-1] if phq else -1
    reduction = (baseline - latest) / baseline if baseline > 0 else 0.0
    # The measurement this event recorded: the last one taken at ``at`` (the list is in time order).
    last = next((m for m in reversed(course.measurements) if m.at == at), None) if event == "record_measure" else None
    recorded = last is not None
    measure = (
        {"instrument": last.instrument, "score": last.score, "item9": last.item9 or 0}
        if last
        else {"instrument": "", "score": 0, "item9": 0}
    )
    return {
        "state": course.state.value,
        "event": event,
        "data": dict(data),
        "sessions_held": c.held,
        "sessions_missed": c.missed,
        "sessions_cancelled": c.cancelled,
        "sessions_planned": course.planned_sessions,
        "sessions_remaining": c.future,
        "sessions_total": c.recorded + c.future,
        "sessions_max": protocol.sessions.max,
        "plan_limited": c.limited,
        "consecutive_missed": c.consecutive_missed,
        "intake_held": c.intake_held,
        "assessment_held": c.assessment_held,
        "engagement_sessions": protocol.phases.engagement,
        "assessment_min": protocol.phases.assessment.min,
        "assessment_max": protocol.phases.assessment.max,
        "termination_sessions": protocol.phases.termination,
        "focus_limit": protocol.focus_limit,
        "retarget_min_sessions": protocol.retarget_min_sessions,
        "focus": list(course.focus),
        "current_focus": course.current_focus or "",
        "next_focus": _next_focus(course) or "",
        "foci_worked": len(course.foci_worked),
        "week": week,
        "measure": measure,
        "has_measure": recorded,
        "phq9_baseline": baseline,
        "phq9_latest": latest,
        "phq9_reduction": reduction,
        "attendance_review_after": policy.attendance.attendance_review_after,
        "discharge_review_after": policy.attendance.discharge_review_after,
    }


class _Facts(Mapping[str, Any]):
    """``facts(...)``, worked out on first use."""

    __slots__ = ("_args", "_facts")

    def __init__(
        self,
        course: Course,
        protocol: Protocol,
        policy: ClinicPolicy,
        event: str,
        data: Mapping[str, Any],
        at: datetime,
    ) -> None:
        self._args = (course, protocol, policy, event, data, at)
        self._facts: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._facts is None:
            self._facts = facts(*self._args)
        return self._facts

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _measured_at(m: Measurement) -> datetime:
    return m.at


def _next_focus(course: Course) -> str | None:
    return next((a for a in course.focus if a not in course.foci_worked), None)


def validate_data(event: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Event data checked against its schema; raises InvalidInput naming the field."""
    if event not in EVENTS:
        raise UnknownName(f"unknown event '{event}' (known: {', '.join(EVENTS)})")
    schema = EVENT_DATA.get(event, NoData)
    if data is not None and not isinstance(data, Mapping):
        raise InvalidInput(f"event '{event}' data: must be a JSON object, not {type(data).__name__}")
    try:
        return schema.model_validate(dict(data or {})).model_dump(exclude_none=True, by_alias=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"] and err["type"] == "value_error":  # a check across fields: it names them
            raise InvalidInput(f"event '{event}' data: {err['msg'].removeprefix('Value error, ')}") from None
        field = ".".join(str(x) for x in err["loc"]) or "data"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        shown = f" (got {err['input']!r})" if err["type"] not in ("missing", "extra_forbidden") else ""
        raise InvalidInput(f"event '{event}' data: {field}: {msg}{shown}") from None


def apply(
    course: Course,
    event: str,
    at: datetime,
    protocol: Protocol,
    policy: ClinicPolicy,
    data: Mapping[str, Any] | None = None,
) -> tuple[Course, Effects]:
    """Apply ``event`` at ``at`` and every rule it sets off.

    Returns the new course and its effects (reminders added, reminder ids cancelled,
    history entries written). Raises UnknownName, InvalidInput or Refused, and then
    nothing has changed.
    """
    new, effects, _ = apply_planned(course, event, at, protocol, policy, data)
    return new, effects


def apply_planned(
    course: Course,
    event: str,
    at: datetime,
    protocol: Protocol,
    policy: ClinicPolicy,
    data: Mapping[str, Any] | None = None,
    planned: Plan | None = None,
) -> tuple[Course, Effects, Plan]:
    """``apply``, also returning the new course's plan; ``planned`` is the course's plan when
    the caller has it (``plan(course, protocol, policy)``), so a run of events on one course
    plans once per event instead of twice, and not at all after an event that changed
    nothing the planner reads (``plans_alike``): then ``planned`` is returned as the new plan."""
    at = _aware(at, "at")
    check_order(course, event, at)
    checked = validate_data(event, data)
    before = (planned if planned is not None else plan(course, protocol, policy)).reminders
    new = _apply(course, event, at, checked, protocol, policy, rule=None, depth=0)
    # An event that changed nothing the planner reads (a measure, a focus) keeps the plan.
    after_plan = planned if planned is not None and plans_alike(course, new) else plan(new, protocol, policy)
    after = after_plan.reminders
    history = new.history[len(course.history) :]
    if after is before:  # the same plan: nothing added, nothing cancelled
        return new, Effects(added=[], cancelled=[], history=history), after_plan
    old_ids = {r.id for r in before}
    new_ids = {r.id for r in after}
    return (
        new,
        Effects(
            added=[r for r in after if r.id not in old_ids],
            cancelled=[r.id for r in before if r.id not in new_ids and not stays(r, at, new)],
            history=history,
        ),
        after_plan,
    )


def check_order(course: Course, event: str, at: datetime) -> None:
    """Raise InvalidInput for an ``at`` before the course's last change (a measure may be
    entered late: only never before the course was created)."""
    if event == "record_measure":
        if at < course.created_at:
            raise InvalidInput(
                f"at: {at.isoformat()} is before the course was created ({course.created_at.isoformat()})"
            )
        return
    last = max((h.at for h in course.history), default=None)  # a late measure may sit last
    if last is not None and at < last:
        raise InvalidInput(f"at: {at.isoformat()} is before the course's last change ({last.isoformat()})")


def stays(reminder: Reminder, at: datetime, after: Course) -> bool:
    """A reminder an event at ``at`` leaves alone although the new plan lacks it: a therapist
    alert already ``raised``, unless it is an ``attendance_unrecorded`` alert whose session
    ``after`` records (held, missed or cancelled): that one goes even when due, if not yet
    sent, for it is no longer true."""
    if reminder.kind == "attendance_unrecorded" and any(s.number == reminder.session for s in after.sessions):
        return False
    return raised(reminder, at)


def raised(reminder: Reminder, at: datetime) -> bool:
    """A therapist alert already raised at ``at``: emitted by a rule, or due by then. No later
    event cancels one (a safety alert must reach the therapist, even after a withdrawal);
    only reminders of sessions that will not happen, not yet due, are cancelled."""
    return reminder.audience == "therapist" and (reminder.rule is not None or reminder.due <= at)


def why_not(
    course: Course,
    event: str,
    protocol: Protocol,
    policy: ClinicPolicy,
    at: datetime,
    data: Mapping[str, Any] | None = None,
) -> str | None:
    """None when ``event`` would be accepted now, else the reason it would be refused."""
    try:
        apply(course, event, at, protocol, policy, data)
    except (Refused, InvalidInput) as exc:
        return str(exc)
    return None


def allowed_events(course: Course, protocol: Protocol) -> list[str]:
    """Events the course's state allows (guards and data still decide)."""
    machine = lifecycle_for(protocol)
    return [e for e in EVENTS if course.state.value in machine.sources(e)]


def _apply(
    course: Course,
    event: str,
    at: datetime,
    data: dict[str, Any],
    protocol: Protocol,
    policy: ClinicPolicy,
    rule: str | None,
    depth: int,
) -> Course:
    machine = lifecycle_for(protocol)
    state = course.state.value
    if state not in machine.sources(event):
        allowed = ", ".join(allowed_events(course, protocol)) or "none"
        raise Refused(event, state, f"not allowed in this state (allowed: {allowed})")
    changes = _prepare(course, event, at, data, protocol, policy)
    f = _Facts(course, protocol, policy, event, data, at)  # worked out only if a guard reads them
    resume_to = course.pauses[-1].resume_to.value if course.pauses else None
    taken, adapter = machine.trigger(event, state, f, resume_to)
    if adapter.error is not None:
        raise _Unevaluable(event, state, f"{adapter.error} (fix the rule file)")
    if not taken:
        why = adapter.failed.explain(f) if adapter.failed else "no transition's condition holds"
        raise Refused(event, state, f"condition not met: {why}")
    new_state = S(adapter.state)
    entry = HistoryEntry(event=event, at=at, **{"from": course.state}, to=new_state, rule=rule, data=data)
    changes.update(_effect(course, event, at, data, new_state))
    changes["state"] = new_state
    changes["history"] = [*course.history, entry]
    if "data_note" in changes:
        entry = entry.model_copy(update={"data": {**data, **changes.pop("data_note")}})
        changes["history"] = [*course.history, entry]
    notice = changes.pop("notice", None)
    if notice is not None:
        changes["alerts"] = with_notice(course.alerts, notice)
    new = course.model_copy(update=changes)
    return _run_rules(new, event, at, data, protocol, policy, depth, state)


def _prepare(
    course: Course, event: str, at: datetime, data: dict[str, Any], protocol: Protocol, policy: ClinicPolicy
) -> dict[str, Any]:
    """Checks that are facts of the course, not protocol choices; the record changes they imply."""
    state = course.state.value
    if event in RECORDING:
        return record_session(course, event, at, data, protocol, policy)
    if event == "reschedule_session":
        return reschedule(course, at, data, protocol, policy)
    if event == "change_slot":
        return change_slot(course, at, data, protocol, policy)
    if event == "change_therapist":
        return change_therapist(course, at, data, protocol, policy)
    if event == "set_focus":
        areas = data["areas"]
        unknown = [a for a in areas if a not in protocol.problem_areas]
        if unknown:
            raise UnknownName(
                f"event 'set_focus' data: areas: unknown problem area '{unknown[0]}' "
                f"(known: {', '.join(protocol.problem_areas)})"
            )
        if len(set(areas)) != len(areas):
            raise InvalidInput("event 'set_focus' data: areas: an area is ranked twice")
        return {"focus": list(areas)}
    if event == "start_intervention" and not course.focus:
        raise Refused(event, state, "no focus set (send set_focus with the ranked problem areas first)")
    if event == "retarget" and _next_focus(course) is None:
        raise Refused(event, state, "no further ranked problem area to work on")
    if event == "extend":
        c = counts(course, protocol)
        entries = c.recorded + max(0, course.planned_sessions + data["sessions"] - c.held)
        if entries > protocol.sessions.max:
            raise Refused(
                event,
                state,
                f"extending by {data['sessions']} would make {entries} session entries, "
                f"past the protocol's maximum of {protocol.sessions.max}",
            )
        return {"planned_sessions": course.planned_sessions + data["sessions"]}
    return {}


def _effect(course: Course, event: str, at: datetime, data: dict[str, Any], new_state: CourseState) -> dict[str, Any]:
    """The record changes an accepted event makes beyond its state."""
    if event == "record_measure":  # kept in time order: a questionnaire may be entered late
        held = [s.number for s in course.sessions if s.status is SessionStatus.held and s.start <= at]
        m = Measurement(
            instrument=data["instrument"],
            score=data["score"],
            item9=data.get("item9"),
            at=at,
            session=held[-1] if held else None,
        )
        return {"measurements": sorted([*course.measurements, m], key=_measured_at)}
    if event == "start_intervention":
        return {"current_focus": course.focus[0], "foci_worked": [course.focus[0]]}
    if event == "retarget":
        nxt = _next_focus(course)
        return {
            "current_focus": nxt,
            "foci_worked": [*course.foci_worked, nxt],
            "data_note": {"renegotiation": True, "from_focus": course.current_focus, "to_focus": nxt},
        }
    if event == "pause":
        return {"pauses": [*course.pauses, Pause(start=at, resume_to=course.state)]}
    if event == "resume":
        last = course.pauses[-1].model_copy(update={"end": at})
        return {"pauses": [*course.pauses[:-1], last]}
    if event == "complete":
        return {"completed_at": at}
    return {}


def _run_rules(
    course: Course,
    event: str,
    at: datetime,
    data: dict[str, Any],
    protocol: Protocol,
    policy: ClinicPolicy,
    depth: int,
    state: str,
) -> Course:
    """Fire every rule ``event`` sets off, in file order, on the facts after the event. A
    condition that cannot be evaluated refuses the event (``state``: the state it met)."""
    f: dict[str, Any] | None = None
    late = event == "cancel_session" and course.history[-1].data.get("late") is True
    events = (event, "miss_session") if late else (event,)  # a late cancellation counts as a miss
    for rule in protocol.rules:
        if rule.trigger and not any(e in rule.trigger for e in events):
            continue
        if rule.once and rule.id in course.fired_rules:
            continue
        condition = rule.condition
        if condition is not None:
            if f is None:
                f = facts(course, protocol, policy, event, data, at)
            try:
                holds = condition.check(f)
            except EvaluationError as exc:
                raise _Unevaluable(
                    event,
                    state,
                    f"rule '{rule.id}': condition '{condition.source}' cannot be evaluated: {exc} (fix the rule file)",
                ) from None
            if not holds:
                continue
        fired = False
        for action in rule.actions:
            if action.emit is not None:
                alert = _alert(course, protocol, action.emit, at, rule.id)
                if all(a.id != alert.id for a in course.alerts):
                    # Kept in (due, id) order: the order the store reads them back in.
                    alerts = sorted([*course.alerts, alert], key=lambda a: (a.due, a.id))
                    course = course.model_copy(update={"alerts": alerts})
                    fired = True
            elif action.transition is not None:
                if depth >= _MAX_RULE_DEPTH:
                    raise InvalidInput(f"rule '{rule.id}': rules set each other off more than {_MAX_RULE_DEPTH} deep")
                try:
                    course = _apply(course, action.transition, at, {}, protocol, policy, rule.id, depth + 1)
                    fired = True
                except _Unevaluable:
                    raise
                except Refused:
                    continue  # the rule's transition is not possible now: nothing to take
                f = None
        if fired and rule.once:
            course = course.model_copy(update={"fired_rules": [*course.fired_rules, rule.id]})
    return course


def _alert(course: Course, protocol: Protocol, kind: str, at: datetime, rule: str) -> Reminder:
    recorded = [s.number for s in course.sessions]
    session = recorded[-1] if recorded else None
    audience = protocol.kinds[kind]
    return Reminder(
        id=reminder_id(course.id, kind, session, at.isoformat(), f"rule:{rule}"),
        course=course.id,
        kind=kind,
        audience=audience,  # type: ignore[arg-type]
        due=at,
        session=session,
        rule=rule,
    )


def reconcile(
    stored: Sequence[Reminder], planned: Sequence[Reminder], at: datetime, after: Course
) -> tuple[list[Reminder], list[str], list[Reminder]]:
    """What makes the reminders as stored those of ``planned`` (a plan under the rules in
    force): (to add: planned and not stored, or stored cancelled; to cancel: ids stored pending
    that the plan lacks, unless they ``stays``; to reschedule: stored pending under the same id
    with another due instant). The "before" side is what is stored, never a recomputation."""
    by_id = {r.id: r for r in stored}
    planned_ids = {r.id for r in planned}
    pending = ReminderStatus.pending
    cancelled = [r.id for r in stored if r.status is pending and r.id not in planned_ids and not stays(r, at, after)]
    added: list[Reminder] = []
    moved: list[Reminder] = []
    for r in planned:
        old = by_id.get(r.id)
        if old is None or old.status is ReminderStatus.cancelled:
            added.append(r)
        elif old.status is pending and old.due != r.due:
            moved.append(r)
    return added, cancelled, moved


def migration_problem(course: Course, old: Protocol, new: Protocol) -> str | None:
    """Why version ``new`` cannot take ``course`` (now on ``old``), or None. The checks:
    the course is running (active or paused); the session entries recorded plus those still to
    plan fit the new maximum; its focus areas are problem areas of the new version and no more
    foci were worked than its ``focus_limit``; every alert it holds is a kind the new version
    knows; a course in assessment has not held more assessment sessions than the new maximum."""
    if course.state not in (*ACTIVE_STATES, CourseState.paused):
        return f"not running (state {course.state.value})"
    c = counts(course, old)
    planned = migrated_planned(course, old, new)
    entries = c.recorded + max(0, planned - c.held)
    if c.recorded > new.sessions.max:
        return f"{c.recorded} session entries recorded, more than {new.version}'s maximum of {new.sessions.max}"
    if entries > new.sessions.max:
        return f"its plan would make {entries} session entries, past {new.version}'s maximum of {new.sessions.max}"
    unknown = [a for a in course.focus if a not in new.problem_areas]
    if unknown:
        return f"focus area '{unknown[0]}' is not a problem area of {new.version}"
    if len(course.foci_worked) > new.focus_limit:
        return f"{len(course.foci_worked)} foci worked, more than {new.version}'s focus_limit of {new.focus_limit}"
    kinds = new.kinds
    odd = sorted({a.kind for a in course.alerts if a.kind not in kinds})
    if odd:
        return f"it holds a '{odd[0]}' alert, a kind {new.version} does not know"
    at_state = course.pauses[-1].resume_to if course.state is CourseState.paused and course.pauses else course.state
    if at_state is CourseState.assessment and c.assessment_held > new.phases.assessment.max:
        return (
            f"{c.assessment_held} assessment sessions held, more than {new.version}'s maximum of "
            f"{new.phases.assessment.max}"
        )
    return None


def migrated_planned(course: Course, old: Protocol, new: Protocol) -> int:
    """The sessions a course plans on ``new``: the new version's number, plus any extension
    the course had on top of the old one's."""
    return new.sessions.planned + max(0, course.planned_sessions - old.sessions.planned)


def migrate(course: Course, old: Protocol, new: Protocol, at: datetime) -> Course:
    """The course on protocol version ``new``, state and history kept, a ``migrate`` history
    entry added (``data: {from, to}``). Raises Refused with ``migration_problem``'s reason."""
    problem = migration_problem(course, old, new)
    if problem is not None:
        raise Refused("migrate", course.state.value, problem)
    entry = HistoryEntry.model_validate(
        {"event": "migrate", "at": _aware(at, "at"), "from": course.state, "to": course.state,
         "data": {"from": old.version, "to": new.version}}
    )  # fmt: skip
    return course.model_copy(
        update={
            "protocol_version": new.version,
            "planned_sessions": migrated_planned(course, old, new),
            "history": [*course.history, entry],
        }
    )
