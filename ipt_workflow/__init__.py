"""ipt-workflow: a rules-based scheduling and workflow engine for courses of
Interpersonal Psychotherapy (IPT). The public API is ``__all__``; the rest is internal."""

from typing import TYPE_CHECKING, Any

from .errors import ConflictError, InvalidInput, IptError, Refused, RuleFileError, StoreError, UnknownName
from .lifecycle import EVENTS, allowed_events, apply, new_course, why_not
from .model import (
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
from .planner import plan
from .protocol import FACTS, ClinicPolicy, Protocol
from .rulefiles import Rulebook, load_file, load_rules
from .simulation import Simulation, SimulationEvent, parse_events, simulate
from .views import course_json, history_json, reminder_json, session_json

if TYPE_CHECKING:
    from .workflow import Workflow

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The database facade loads SQLAlchemy: only when asked for, so the core stays light.
    if name == "Workflow":
        from .workflow import Workflow

        return Workflow
    raise AttributeError(f"module 'ipt_workflow' has no attribute {name!r}")


__all__ = [
    "EVENTS",
    "FACTS",
    "ClinicPolicy",
    "ConflictError",
    "Course",
    "CourseState",
    "Effects",
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
    "Session",
    "SessionStatus",
    "Simulation",
    "SimulationEvent",
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
