"""The lifecycle table of SPEC §3 as data: which event moves a course from which states to
which, and the key under which a protocol may guard it. ``lifecycle`` builds its machine from
it and ``protocol`` checks rule files against it, so neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass

from .model import ACTIVE_STATES, CourseState

S = CourseState
_ACTIVE = [s.value for s in S if s in ACTIVE_STATES]
ALL_STATES = [s.value for s in S]


@dataclass(frozen=True)
class Step:
    """One row of the lifecycle table (SPEC §3). ``dest`` None: the state does not change."""

    event: str
    sources: tuple[str, ...]
    dest: str | None
    guard: str | None = None  # key under which a protocol may give a CEL guard


TABLE: tuple[Step, ...] = (
    Step("complete_intake", ("intake",), "assessment", "complete_intake"),
    Step("hold_session", tuple(_ACTIVE), None),
    Step("miss_session", tuple(_ACTIVE), None),
    Step("cancel_session", tuple(_ACTIVE), None),
    Step("reschedule_session", tuple(_ACTIVE), None),
    Step("change_slot", tuple(_ACTIVE), None),
    Step("change_therapist", tuple(_ACTIVE), None),
    Step("record_measure", tuple(ALL_STATES), None),
    Step("set_focus", ("assessment", "retargeting"), None),
    Step("start_intervention", ("assessment",), "intervention", "start_intervention"),
    Step("resolve_focus", ("intervention",), "retargeting", "resolve_focus->retargeting"),
    Step("resolve_focus", ("intervention",), "termination", "resolve_focus->termination"),
    Step("retarget", ("retargeting",), "intervention", "retarget"),
    Step("begin_termination", ("intervention", "retargeting"), "termination", "begin_termination"),
    Step("complete", ("termination",), "completed", "complete"),
    Step("extend", tuple(_ACTIVE), None, "extend"),
    Step("pause", tuple(_ACTIVE), "paused", "pause"),
    *(Step("resume", ("paused",), s, "resume") for s in _ACTIVE),
    Step("withdraw", (*_ACTIVE, "paused"), "withdrawn", "withdraw"),
)
EVENTS: tuple[str, ...] = tuple(dict.fromkeys(step.event for step in TABLE))
GUARD_KEYS: tuple[str, ...] = tuple(dict.fromkeys(step.guard for step in TABLE if step.guard))
