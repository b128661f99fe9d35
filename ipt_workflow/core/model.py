"""The domain's values: courses, sessions, reminders, measurements, history, event data.

All are pydantic models; the ones the engine hands out are frozen. A course stores only
what happened (recorded sessions, measurements, pauses, alerts raised by rules, history);
the future is always recomputed by the planner, so it can never drift from the rules.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .references import REFERENCE_PATTERN
from .references import REFERENCE_RULE as REFERENCE_RULE
from .references import check_reference as check_reference
from .references import reference_problem as reference_problem

COURSE_SCHEMA_VERSION = 1


class CourseState(StrEnum):
    intake = "intake"
    assessment = "assessment"
    intervention = "intervention"
    retargeting = "retargeting"
    termination = "termination"
    completed = "completed"
    paused = "paused"
    withdrawn = "withdrawn"


ACTIVE_STATES = frozenset(
    {
        CourseState.intake,
        CourseState.assessment,
        CourseState.intervention,
        CourseState.retargeting,
        CourseState.termination,
    }
)


class SessionStatus(StrEnum):
    planned = "planned"
    held = "held"
    missed = "missed"
    cancelled = "cancelled"


class ReminderStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    skipped = "skipped"
    cancelled = "cancelled"
    failed = "failed"


BUILTIN_PROBLEM_AREAS = ("grief", "role_dispute", "role_transition", "interpersonal_deficits")

#: Reminder kinds of SPEC §2 and who they go to. ``plan_limit`` is ours: the plan hit the
#: protocol's maximum and a missed session could not be replaced; ``schedule_conflict``: a session
#: was booked over another of the same therapist (SPEC §9); ``attendance_unrecorded``: a session
#: ended the clinic's ``attendance.no_show_after`` ago with neither hold nor miss recorded (SPEC §11).
BUILTIN_KINDS: dict[str, str] = {
    "session_reminder": "client",
    "measure_due": "client",
    "assessment_limit": "therapist",
    "termination_prep": "therapist",
    "non_response_review": "therapist",
    "attendance_review": "therapist",
    "discharge_review": "therapist",
    "safety_alert": "therapist",
    "follow_up": "therapist",
    "digest": "therapist",
    "plan_limit": "therapist",
    "session_moved": "client",
    "session_cancelled": "client",
    "schedule_conflict": "therapist",
    "attendance_unrecorded": "therapist",
    "group_size_review": "therapist",
}

Reference = Annotated[str, StringConstraints(pattern=REFERENCE_PATTERN)]


def empty_list() -> list[Any]:
    """A new empty list: the ``default_factory`` of list fields. Not ``list`` itself: pydantic
    reads a factory's signature when it builds a model, and a builtin's is parsed from its
    text signature (milliseconds for the first, ~0.1 ms each after; a function's is at hand)."""
    return []


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Session(_Frozen):
    """One session of a course. ``start`` is local time with its UTC offset."""

    number: int
    phase: str
    start: datetime
    status: SessionStatus
    step: int = Field(description="cadence step of the slot this session sits in")
    duration_minutes: int
    format: str = "individual"
    participants: list[str] = Field(default_factory=lambda: ["client"])
    optional_participants: list[str] = Field(default_factory=empty_list)
    therapist: str | None = Field(default=None, description="who sees the client; the planner fills it in")
    original_start: datetime | None = Field(default=None, description="where the series had it, when moved")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.duration_minutes)


class Reminder(_Frozen):
    """Something due at an instant. ``id`` is stable and is the idempotency key."""

    id: str
    course: str
    kind: str
    audience: Literal["client", "therapist"]
    due: datetime
    session: int | None
    status: ReminderStatus = ReminderStatus.pending
    rule: str | None = None
    #: What a receiver needs beyond the id: for ``session_moved`` the session's old and new
    #: local start (``old_start``, ``start``), for ``session_cancelled`` its ``start``.
    detail: dict[str, str] | None = None


class Absence(_Frozen):
    """A therapist's leave: every day from ``start`` to ``until`` (both included), in the
    course's zone. The therapist's planned sessions on those days move as for a closure."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)

    id: str
    therapist: Reference
    start: date = Field(alias="from")
    until: date
    reason: str | None = None
    created_at: datetime | None = None

    def covers(self, therapist: str, day: date) -> bool:
        return self.therapist == therapist and self.start <= day <= self.until


class Measurement(_Frozen):
    instrument: str
    score: int
    item9: int | None = None
    at: datetime
    session: int | None = None


class Pause(_Frozen):
    start: datetime
    end: datetime | None = None
    resume_to: CourseState


class HistoryEntry(_Frozen):
    """One change to a course: the event, when, the states, and the rule that took it."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)

    event: str
    at: datetime
    from_: CourseState | None = Field(alias="from")
    to: CourseState
    rule: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Course(_Frozen):
    """What is known of one client's course. Nothing here is a name: ``client`` is a
    pseudonymous reference."""

    schema_version: int = COURSE_SCHEMA_VERSION
    id: Reference
    client: Reference
    therapist: Reference
    protocol: str
    protocol_version: str
    timezone: str
    start: date
    slot: time
    state: CourseState
    focus: list[str] = Field(default_factory=empty_list)
    current_focus: str | None = None
    foci_worked: list[str] = Field(default_factory=empty_list)
    planned_sessions: int
    sessions: list[Session] = Field(default_factory=empty_list)
    measurements: list[Measurement] = Field(default_factory=empty_list)
    pauses: list[Pause] = Field(default_factory=empty_list)
    alerts: list[Reminder] = Field(default_factory=empty_list)
    fired_rules: list[str] = Field(default_factory=empty_list)
    completed_at: datetime | None = None
    created_at: datetime
    history: list[HistoryEntry] = Field(default_factory=empty_list)
    version: int = Field(default=0, description="optimistic-concurrency version; the store sets it")
    #: The absences of the therapists this course has had (read with the course, not part of
    #: its record): the planner moves their sessions out of them.
    absences: list[Absence] = Field(default_factory=empty_list, exclude=True)
    #: The group this course is a member of (SPEC §10), or None for an individual course.
    group: str | None = None
    #: The group's schedule (read with the course, not part of its record): the planner puts
    #: the member's group sessions at the group's times.
    group_plan: GroupPlan | None = Field(default=None, exclude=True)
    #: The fingerprint of the rules its stored plan was made under (read with the course from
    #: ``ipt_courses.rules_fingerprint``, not part of its record; None: not known).
    rules_fingerprint: str | None = Field(default=None, exclude=True)


class GroupSlot(_Frozen):
    """One session of a group's schedule as its members' planners see it."""

    number: int = Field(description="the group session's number (1 = first group session)")
    start: datetime
    status: SessionStatus
    step: int
    therapist: str | None = None
    original_start: datetime | None = None


class GroupPlan(_Frozen):
    """A group's schedule for its members: ``individual_first`` individual sessions of each
    member come first (their starts are the member's own), then member session
    ``individual_first + n`` is group session ``n``."""

    group: str
    individual_first: int
    sessions: list[GroupSlot] = Field(default_factory=empty_list)


class GroupState(StrEnum):
    active = "active"
    completed = "completed"


class Group(_Frozen):
    """A cohort's shared schedule (SPEC §10): the group's recorded sessions and calendar
    history; each member has a course of their own that links to it."""

    id: Reference
    protocol: str
    protocol_version: str
    therapist: Reference
    cotherapist: Reference | None = None
    timezone: str
    start: date
    slot: time
    min: int = Field(ge=1)
    max: int = Field(ge=1)
    state: GroupState = GroupState.active
    sessions: list[Session] = Field(default_factory=empty_list)
    history: list[HistoryEntry] = Field(default_factory=empty_list)
    created_at: datetime
    version: int = 0
    absences: list[Absence] = Field(default_factory=empty_list, exclude=True)


class Plan(_Frozen):
    """The full plan of a course: every session (recorded and projected) and every
    reminder it implies, both in time order."""

    sessions: list[Session]
    reminders: list[Reminder]
    #: The rules it was made under (``planner.rules_fingerprint``): stored with the plan.
    fingerprint: str | None = None


class Effects(_Frozen):
    """What an event changed, for the shell to act on: reminders to add and ids to cancel."""

    added: list[Reminder]
    cancelled: list[str]
    history: list[HistoryEntry]
    #: Pending reminders kept under their id whose due instant the rules in force moved.
    rescheduled: list[Reminder] = Field(default_factory=empty_list)


# Event data, validated strictly (no "12" for 12, no 12.5).


class _EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)


class NoData(_EventData):
    pass


class MeasureData(_EventData):
    instrument: Literal["phq9"]
    score: int = Field(ge=0, le=27)
    item9: int = Field(ge=0, le=3)

    @model_validator(mode="after")
    def _item9_in_total(self) -> MeasureData:
        if self.item9 > self.score:
            raise ValueError(f"item9: {self.item9} is more than the total score {self.score} (item 9 counts in it)")
        return self


class FocusData(_EventData):
    areas: list[str] = Field(min_length=1)


class ExtendData(_EventData):
    sessions: int = Field(ge=1)


class SessionRef(_EventData):
    number: int | None = Field(default=None, ge=1)


class RescheduleData(_EventData):
    """``start`` is local wall-clock time in the course's zone, ``YYYY-MM-DDTHH:MM``."""

    number: int = Field(ge=1)
    start: str = Field(max_length=40)
    force: bool | None = None


class SlotData(_EventData):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    from_: int = Field(alias="from", ge=1)
    weekday: str = Field(max_length=20)
    time: str = Field(max_length=20)
    force: bool | None = None


class TherapistData(_EventData):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    therapist: str = Field(max_length=200)
    from_: int | None = Field(default=None, alias="from", ge=1)
    force: bool | None = None


EVENT_DATA: dict[str, type[_EventData]] = {
    "record_measure": MeasureData,
    "set_focus": FocusData,
    "extend": ExtendData,
    "hold_session": SessionRef,
    "miss_session": SessionRef,
    "cancel_session": SessionRef,
    "reschedule_session": RescheduleData,
    "change_slot": SlotData,
    "change_therapist": TherapistData,
}
