"""What ``Workflow`` returns besides the core models: typed summaries and listings. Field
names are the JSON fields of SPEC (``model_dump(mode="json")`` gives that JSON), so the
library, the command line's ``--json`` and these models say the same names."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .core.model import CourseState, GroupState, SessionStatus


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


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


class SessionChanges(_Result):
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    moved: list[dict[str, Any]]


class ReminderChanges(_Result):
    added: list[dict[str, Any]]
    cancelled: list[dict[str, Any]]
    moved: list[dict[str, Any]]


class CourseChangeResult(_Result):
    """One course of a replan or migration (``ipt replan --json`` / ``rules migrate --json``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    course: str
    protocol: str
    from_: str = Field(alias="from")
    to: str
    status: str  # migrated, replanned, unchanged or refused
    reason: str | None
    sessions: SessionChanges
    reminders: ReminderChanges


class RuleChangeReport(_Result):
    """What ``Workflow.replan`` / ``Workflow.migrate`` did (or would do, ``dry_run``); the
    JSON of ``ipt replan --json`` is ``model_dump(mode="json", by_alias=True)``."""

    dry_run: bool
    migrated: int
    replanned: int
    unchanged: int
    refused: int
    courses: list[CourseChangeResult]


class IngestResult(_Result):
    """What ``Workflow.ingest_fhir`` did: ``applied`` ``(position, course, event)`` in order;
    resource versions ``already`` applied, and later versions that changed nothing."""

    applied: list[tuple[str, str, str]]
    already: int
    unchanged: int


class CaseloadRow(_Result):
    """One active course of ``Workflow.caseload`` (``ipt caseload --json``)."""

    course: str
    client: str
    therapist: str
    protocol: str
    timezone: str
    state: str
    week: int
    weeks: int
    held: int
    missed: int
    phq9: dict[str, Any] | None
    phq9_text: str
    open_alerts: list[dict[str, Any]]
    next_session: str | None
    next_session_number: int | None
