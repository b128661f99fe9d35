"""Plans reused instead of made again (issue 15): ``plans_alike`` tells when an event changed
nothing the planner reads (the plan it had stands), ``stored_plan`` remembers the plans of the
courses last read from a store. Pure: the same inputs give the same plan, remembered or not."""

from __future__ import annotations

from typing import Any

from .calendar import CALENDAR_EVENTS, calendar_of
from .model import Course, Plan
from .planner import CANCELLATION, late_cancellations, plan, pre_starts
from .policy import ClinicPolicy
from .protocol import Protocol

#: Course fields ``plan`` never reads (the history it reads through ``calendar_of``,
#: ``late_cancellations`` and ``pre_starts``): every other field is a planning input.
_NOT_PLANNED = frozenset(
    {"measurements", "fired_rules", "focus", "current_focus", "foci_worked", "history", "version", "rules_fingerprint"}
)
_PLANNED_FIELDS = tuple(f for f in Course.model_fields if f not in _NOT_PLANNED)
#: The history entries ``calendar_of`` and ``late_cancellations`` read (``pre_starts``: the first).
_HISTORY_READ = frozenset({*CALENDAR_EVENTS, CANCELLATION})


def plans_alike(a: Course, b: Course) -> bool:
    """True when ``plan`` (under the same rules) gives ``b`` the very plan it gives ``a``: every
    field the planner reads is the same object in both (as in a course and the ``model_copy``
    an event made of it, for the fields the event left alone), and their histories state the
    same calendar, late cancellations and pre-group starts. False says nothing: plan again."""
    da, db = a.__dict__, b.__dict__
    if any(da[f] is not db[f] for f in _PLANNED_FIELDS):
        return False
    ha, hb = a.history, b.history
    n = len(ha)
    if ha is hb or (n and hb[:n] == ha and all(h.event not in _HISTORY_READ for h in hb[n:])):
        return True  # the same history, or entries added of kinds the planner never reads
    first_a, first_b = a.history[:1], b.history[:1]
    return (
        len(first_a) == len(first_b)
        and all(x is y for x, y in zip(first_a, first_b, strict=True))
        and late_cancellations(a) == late_cancellations(b)
        and calendar_of(a) == calendar_of(b)
    )


def _planning_key(course: Course) -> tuple[Any, ...]:
    """Every input ``plan`` reads from ``course``, as values compared with ``==``."""
    d = course.__dict__
    return (*[d[f] for f in _PLANNED_FIELDS], calendar_of(course), late_cancellations(course), pre_starts(course))


#: The plans of the courses ``stored_plan`` was last asked for, by course id:
#: (protocol, policy, planning key, plan). At most ``_STORED_PLANS_MAX`` (~70 kB each).
_STORED_PLANS: dict[str, tuple[Protocol, ClinicPolicy, tuple[Any, ...], Plan]] = {}
_STORED_PLANS_MAX = 128


def stored_plan(course: Course, protocol: Protocol, policy: ClinicPolicy) -> Plan:
    """``plan`` of a course as read from a store, remembered: asked again for an equal course
    (every planning input equal, ``_planning_key``: the same course read again after an event
    that changed nothing the planner reads, a measure say) under the same rules, it returns
    the plan it made (fresh lists of the same frozen sessions and reminders) instead of
    planning again. Only for courses read from a store: one store reads back a value the same
    way each time, whereas a course built in memory may hold an equal instant with another
    ``tzinfo`` object (a ``ZoneInfo`` where a read gives a fixed offset), which a plan shows."""
    key = _planning_key(course)
    hit = _STORED_PLANS.get(course.id)
    if hit is not None and hit[0] is protocol and hit[1] is policy and hit[2] == key:
        found = hit[3]
    else:
        found = plan(course, protocol, policy)
        if len(_STORED_PLANS) >= _STORED_PLANS_MAX:
            _STORED_PLANS.clear()
        _STORED_PLANS[course.id] = (protocol, policy, key, found)
    return found.model_copy(update={"sessions": list(found.sessions), "reminders": list(found.reminders)})
