"""ipt-workflow: a rules-based scheduling and workflow engine for courses of
Interpersonal Psychotherapy (IPT). The public API is ``__all__``; the rest is internal.

Names are imported on first use, so a command that needs only the store does not pay for
the rule engine, and ``import ipt_workflow`` loads no database, scheduler or CLI library.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from .core.errors import (
        ConflictError,
        InvalidInput,
        IptError,
        Refused,
        RuleFileError,
        ScheduleClash,
        StoreError,
        UnknownName,
    )
    from .core.events import EVENTS
    from .core.lifecycle import allowed_events, apply, new_course, why_not
    from .core.model import (
        Course,
        CourseState,
        Effects,
        HistoryEntry,
        Measurement,
        Plan,
        Reminder,
        ReminderStatus,
        Session,
        SessionStatus,
    )
    from .core.planner import plan
    from .core.policy import ClinicPolicy
    from .core.protocol import FACTS, Protocol
    from .present.views import course_json, history_json, reminder_json, session_json
    from .results import AgendaEntry, CourseSummary, GroupSummary, GroupView, SlotOption
    from .rulebook.files import Rulebook, load_file, load_rules
    from .simulation import Simulation, SimulationEvent, parse_events, simulate
    from .workflow import Attachment, Workflow

__version__ = "0.1.0"

_WHERE = {
    "core.errors": [
        "ConflictError", "InvalidInput", "IptError", "Refused", "RuleFileError", "ScheduleClash", "StoreError",
        "UnknownName",
    ],
    "core.events": ["EVENTS"],
    "core.lifecycle": ["allowed_events", "apply", "new_course", "why_not"],
    "core.model": [
        "Course", "CourseState", "Effects", "HistoryEntry", "Measurement", "Plan", "Reminder", "ReminderStatus",
        "Session", "SessionStatus",
    ],
    "core.planner": ["plan"],
    "core.protocol": ["FACTS", "Protocol"],
    "core.policy": ["ClinicPolicy"],
    "rulebook.files": ["Rulebook", "load_file", "load_rules"],
    "simulation": ["Simulation", "SimulationEvent", "parse_events", "simulate"],
    "present.views": ["course_json", "history_json", "reminder_json", "session_json"],
    "results": ["AgendaEntry", "CourseSummary", "GroupSummary", "GroupView", "SlotOption"],
    "workflow": ["Attachment", "Workflow"],
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "EVENTS",
    "FACTS",
    "AgendaEntry",
    "Attachment",
    "ClinicPolicy",
    "ConflictError",
    "Course",
    "CourseState",
    "CourseSummary",
    "Effects",
    "GroupSummary",
    "GroupView",
    "HistoryEntry",
    "InvalidInput",
    "IptError",
    "Measurement",
    "Plan",
    "Protocol",
    "Refused",
    "Reminder",
    "ReminderStatus",
    "RuleFileError",
    "Rulebook",
    "ScheduleClash",
    "Session",
    "SessionStatus",
    "Simulation",
    "SimulationEvent",
    "SlotOption",
    "StoreError",
    "UnknownName",
    "Workflow",
    "__version__",
    "allowed_events",
    "apply",
    "course_json",
    "history_json",
    "load_file",
    "load_rules",
    "new_course",
    "parse_events",
    "plan",
    "reminder_json",
    "session_json",
    "simulate",
    "why_not",
]
assert set(__all__) == {*_MODULE_OF, "__version__"}


def __getattr__(name: str) -> _Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ipt_workflow' has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
