"""What ``Workflow`` returns besides the core models: typed summaries and listings. Field
names are the JSON fields of SPEC (``model_dump(mode="json")`` gives that JSON), so the
library, the command line's ``--json`` and these models say the same names."""

from __future__ import annotations

from datetime import date, datetime, time

from pydantic import BaseModel, ConfigDict

from .core.model import CourseState, GroupState, SessionStatus


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CourseSummary(_Result):
    """One line of ``Workflow.courses()`` (``ipt course list --json``)."""

    id: str
    client: str
    therapist: str
    protocol: str
    state: CourseState
    version: int
    created_at: datetime


class GroupSummary(_Result):
    """One line of ``Workflow.groups()`` (``ipt group list --json``)."""

    id: str
    protocol: str
    protocol_version: str
    therapist: str
    cotherapist: str | None
    state: GroupState
    start: date
    min: int
    max: int
    members: int


class GroupSessionView(_Result):
    number: int
    start: datetime
    end: datetime
    status: SessionStatus
    therapist: str | None = None
    original_start: datetime | None = None
    present: list[str]
    absent: list[str]


class GroupMember(_Result):
    course: str
    client: str
    state: CourseState


class GroupView(_Result):
    """``Workflow.group(id)``: SPEC §10's group JSON (``ipt group show --json``)."""

    id: str
    protocol: str
    protocol_version: str
    therapist: str
    cotherapist: str | None
    timezone: str
    state: GroupState
    min: int
    max: int
    sessions: list[GroupSessionView]
    members: list[GroupMember]


class AgendaEntry(_Result):
    """One session of ``Workflow.agenda()`` (SPEC §9): local start and end with their offset."""

    therapist: str | None
    course: str | None
    group: str | None
    client: str | None
    session: int
    phase: str | None
    start: datetime
    end: datetime
    status: SessionStatus
    original_start: datetime | None


class SlotOption(_Result):
    """One weekly slot of ``Workflow.slots()`` (``ipt slots --json``): weekday and local time,
    the first and last session it would give, and how many sessions a closure would move."""

    weekday: str
    time: time
    first: datetime
    last: datetime
    moved: int


__all__ = ["AgendaEntry", "CourseSummary", "GroupMember", "GroupSessionView", "GroupSummary", "GroupView", "SlotOption"]
