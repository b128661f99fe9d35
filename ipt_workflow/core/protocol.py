"""Typed protocols and clinic policy, parsed from plain data (the YAML loader lives in the
shell, ``rulefiles.py``). Every CEL condition is compiled here, checked against the fact
names the engine provides, and trial-evaluated on sample facts, so a typo or a type error
is a load error, never a run-time surprise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .cel import MAX_CONDITION_LENGTH, cel, cost_problem
from .events import EVENTS, GUARD_KEYS
from .model import ACTIVE_STATES, BUILTIN_KINDS, BUILTIN_PROBLEM_AREAS, empty_list
from .wallclock import parse_duration

SCHEMA_VERSION = 1

#: The facts a condition may name, with what each means. Values are computed by
#: ``lifecycle.facts``; the sample values type-check conditions at load time.
FACTS: dict[str, tuple[str, Any]] = {
    "state": ("lifecycle state of the course", "intervention"),
    "event": ("the event being applied", "hold_session"),
    "data": ("the event's data (a map)", {}),
    "sessions_held": ("sessions held so far", 3),
    "sessions_missed": ("sessions missed so far", 1),
    "sessions_cancelled": ("sessions cancelled so far", 1),
    "sessions_planned": ("sessions the course is contracted to hold", 12),
    "sessions_remaining": ("planned sessions still to come", 9),
    "sessions_total": ("session entries in the plan, of every status", 14),
    "sessions_max": ("the protocol's maximum session entries", 16),
    "plan_limited": ("a miss could not be replaced: the plan is at its maximum", False),
    "consecutive_missed": ("missed sessions in a row (cancellations do not break a run)", 1),
    "intake_held": ("sessions held in the intake (engagement) phase", 1),
    "assessment_held": ("sessions held in the assessment phase", 2),
    "engagement_sessions": ("the protocol's engagement sessions", 0),
    "assessment_min": ("the protocol's minimum assessment sessions", 1),
    "assessment_max": ("the protocol's maximum assessment sessions", 3),
    "termination_sessions": ("the protocol's termination-phase sessions", 3),
    "focus_limit": ("the protocol's maximum number of foci", 2),
    "retarget_min_sessions": ("sessions a new focus needs before termination", 3),
    "focus": ("ranked problem areas (a list)", ["grief", "role_dispute"]),
    "current_focus": ("the area being worked on, or ''", "grief"),
    "next_focus": ("the next ranked area not yet worked on, or ''", "role_dispute"),
    "foci_worked": ("how many areas have been worked on", 1),
    "week": ("course week at the event (1 = the first 7 days from session 1; 0 before)", 8),
    "measure": ("the measurement this event recorded: {instrument, score, item9}", {}),
    "has_measure": ("this event recorded a measurement", True),
    "phq9_baseline": ("first PHQ-9 score, or -1 when none", 18),
    "phq9_latest": ("latest PHQ-9 score, or -1 when none", 12),
    "phq9_reduction": ("fraction the PHQ-9 fell from baseline (0 when unknown)", 0.33),
    "attendance_review_after": ("clinic: consecutive misses that call a review", 2),
    "discharge_review_after": ("clinic: consecutive misses that call a discharge review", 3),
}
SAMPLE_MEASURE = {"instrument": "phq9", "score": 12, "item9": 0}
SAMPLE_FACTS: dict[str, Any] = {k: v for k, (_, v) in FACTS.items()}
SAMPLE_FACTS["measure"] = SAMPLE_MEASURE
SAMPLE_FACTS["data"] = {"sessions": 2, "areas": ["grief"], "number": 1}

_CEL_FUNCTIONS = {
    "size", "has", "int", "uint", "double", "string", "bool", "contains", "startsWith",
    "endsWith", "matches", "exists", "all", "exists_one", "map", "filter", "min", "max",
}  # fmt: skip
_MACRO_VAR = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


def _check_schema(v: int) -> int:
    if v != SCHEMA_VERSION:
        raise ValueError(f"schema_version {v} is not supported (this engine reads {SCHEMA_VERSION})")
    return v


class EvaluationError(Exception):
    """A condition that compiled and passed its trial could not be evaluated on these facts
    (a division by zero, a key the event data lacks...); ``str()`` says why, in one line."""


class Condition:
    """A compiled, name-checked, cost-bounded CEL condition; ``check(facts)`` returns a bool."""

    __slots__ = ("names", "program", "source")

    def __init__(self, source: str) -> None:
        """Compile ``source``; raises ValueError with a one-line reason."""
        if not isinstance(source, str) or not source.strip():
            raise ValueError("a condition must be a non-empty CEL expression")
        self.source = source
        if len(source) > MAX_CONDITION_LENGTH:
            raise ValueError(f"a condition is at most {MAX_CONDITION_LENGTH} characters (this one has {len(source)})")
        try:
            self.program = cel.compile(source)
        except ValueError as exc:
            raise ValueError(f"invalid CEL: {_first_line(str(exc))}") from None
        bound = set(_MACRO_VAR.findall(source))
        unknown = [n for n in self.program.variables() if n not in FACTS and n not in bound]
        if unknown:
            raise ValueError(f"unknown name '{unknown[0]}' in '{source}' (known facts: {', '.join(FACTS)})")
        self.names = [n for n in self.program.variables() if n in FACTS]
        bad = [f for f in self.program.functions() if not (f.startswith(("_", "@", "!", "-")) or f in _CEL_FUNCTIONS)]
        if bad:
            raise ValueError(f"unknown function '{bad[0]}' in '{source}'")
        costly = cost_problem(source)
        if costly:
            raise ValueError(f"'{source}': {costly}")
        try:
            result = self.evaluate(SAMPLE_FACTS)
        except EvaluationError as exc:
            raise ValueError(f"'{source}' cannot be evaluated: {exc}") from None
        if not isinstance(result, bool):
            raise ValueError(f"'{source}' must be true or false, not {type(result).__name__}")

    def evaluate(self, facts: Mapping[str, Any]) -> Any:
        """The value of the condition on ``facts`` (only the ones it names are handed to the
        engine); raises EvaluationError for any error."""
        # Only the facts it names: the engine converts every value it is given, and the whole
        # table costs ~10x the evaluation itself (a condition is checked on every event).
        named = {n: facts[n] for n in self.names if n in facts}
        try:
            return self.program.execute(named)
        except KeyError as exc:
            raise EvaluationError(f"no such key {exc}") from None
        except Exception as exc:  # the engine raises ZeroDivisionError, IndexError, OverflowError...
            raise EvaluationError(_first_line(str(exc)) or type(exc).__name__) from None

    def check(self, facts: Mapping[str, Any]) -> bool:
        """Evaluate on ``facts``: True only for the value true; raises EvaluationError."""
        return self.evaluate(facts) is True

    def explain(self, facts: Mapping[str, Any]) -> str:
        """The condition with the values of the facts it names, for refusal messages."""
        values = ", ".join(f"{n}={_show(facts.get(n))}" for n in self.names)
        return f"{self.source}" + (f" (with {values})" if values else "")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else text


def version_key(version: str) -> tuple[Any, ...]:
    """A sort key putting protocol versions in semantic version order (SemVer 2.0):
    ``1.2.0 < 1.10.0``, a pre-release before its release (``1.1.0-rc.1 < 1.1.0``), build
    metadata (``+...``) ignored but for a final tie-break on the text. A version that is not
    SemVer still sorts: numeric dot-separated parts by number, others by text."""
    core, _, _build = version.partition("+")
    release, dash, pre = core.partition("-")

    def parts(text: str) -> tuple[tuple[int, int, str], ...]:
        return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in text.split("."))

    pre_key: tuple[Any, ...] = (0, parts(pre)) if dash else (1, ())
    return (parts(release), pre_key, version)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


#: Bounds on rule-file values, so that a plan stays finite and small, every date it computes
#: stays within Python's range, and every name fits its database column (storage/schema.py).
MAX_SESSIONS = 100
MAX_CADENCE_WEEKS = 52
MAX_SESSION_BUFFER = timedelta(hours=4)  # a pause between sessions, not a second booking
NAME_LENGTH = 64  # protocol ids, rule ids, problem areas
SHORT_LENGTH = 32  # versions, reminder kinds


class SessionCounts(_Strict):
    min: int = Field(ge=1)
    planned: int = Field(ge=1)
    max: int = Field(ge=1, le=MAX_SESSIONS)

    @model_validator(mode="after")
    def _ordered(self) -> SessionCounts:
        if not self.min <= self.planned <= self.max:
            raise ValueError("need min <= planned <= max")
        return self


class Bounds(_Strict):
    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError("need min <= max")
        return self


class Phases(_Strict):
    engagement: int = Field(default=0, ge=0, description="intake-phase sessions before assessment")
    assessment: Bounds
    termination: int = Field(ge=1, description="sessions in the termination phase")


class MeasureSchedule(_Strict):
    instrument: Literal["phq9"] = "phq9"
    baseline: bool = True
    every: int = Field(ge=1, description="then every N sessions")
    lead: str = "24h"

    @field_validator("lead")
    @classmethod
    def _lead(cls, v: str) -> str:
        parse_duration(v, "lead")
        return v


class ReminderKind(_Strict):
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=SHORT_LENGTH)
    audience: Literal["client", "therapist"]
    leads: list[str] = Field(default_factory=empty_list, max_length=10)

    @field_validator("leads")
    @classmethod
    def _leads(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_duration(item, "leads")
        return v


class Action(_Strict):
    emit: str | None = None
    transition: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Action:
        if (self.emit is None) == (self.transition is None):
            raise ValueError("an action is exactly one of 'emit: KIND' or 'transition: EVENT'")
        return self


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_.-]*$", max_length=NAME_LENGTH)
    trigger: list[str] = Field(default_factory=empty_list, description="events that set the rule off")
    when: str | None = None
    once: bool = False
    actions: list[Action] = Field(min_length=1)
    _condition: Condition | None = PrivateAttr(default=None)
    _when_error: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Rule:
        if not self.trigger and self.when is None:
            raise ValueError("a rule needs a trigger (a list of events) or a condition ('when')")
        if self.when is not None:
            try:
                self._condition = Condition(self.when)
            except ValueError as exc:
                self._when_error = str(exc)  # reported by the protocol, with its other problems
        return self

    @property
    def condition(self) -> Condition | None:
        return self._condition


class JointSessions(_Strict):
    who: str = Field(pattern=r"^[a-z][a-z_]*$", max_length=SHORT_LENGTH)
    sessions: list[Literal["first", "middle", "last"]] = Field(default_factory=empty_list)
    optional: list[Literal["first", "middle", "last"]] = Field(default_factory=empty_list)


class Protocol(_Strict):
    """One IPT variant, as a rule file states it."""

    schema_version: int
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=NAME_LENGTH)
    version: str = Field(pattern=r"^[^\s@]+$", max_length=SHORT_LENGTH, description="no spaces, no '@'")
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=5000)
    sessions: SessionCounts
    cadence_weeks: int = Field(ge=1, le=MAX_CADENCE_WEEKS)
    duration_minutes: int = Field(ge=5, le=480)
    phases: Phases
    problem_areas: list[Annotated[str, Field(min_length=1, max_length=NAME_LENGTH)]] = Field(
        default_factory=lambda: list(BUILTIN_PROBLEM_AREAS), max_length=32
    )
    focus_limit: int = Field(ge=1)
    retarget_min_sessions: int = Field(default=2, ge=1)
    reschedule_missed: bool = True
    format: Literal["individual", "group"] = "individual"
    individual_first: int = Field(default=0, ge=0, description="group protocols: individual sessions first")
    joint: JointSessions | None = None
    measures: list[MeasureSchedule] = Field(default_factory=empty_list, max_length=10)
    reminders: list[ReminderKind] = Field(default_factory=empty_list, max_length=50)
    follow_ups: list[str] = Field(default_factory=empty_list, max_length=20, description="durations after completion")
    guards: dict[str, str] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=empty_list, max_length=200)
    _guards: dict[str, Condition] = PrivateAttr(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, v: int) -> int:
        return _check_schema(v)

    @field_validator("follow_ups")
    @classmethod
    def _follow_ups(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_duration(item, "follow_ups")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:

        found: list[tuple[str, str]] = []
        ph = self.phases
        if ph.engagement + ph.assessment.max + ph.termination > self.sessions.planned:
            found.append(("phases", "engagement + assessment.max + termination exceed sessions.planned"))
        if len(set(self.problem_areas)) != len(self.problem_areas):
            found.append(("problem_areas", "an area is listed twice"))
        kinds = self.kinds
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule._when_error is not None:
                found.append((f"rules.{i}.when", rule._when_error))
            if rule.id in seen:
                found.append((f"rules.{i}.id", f"duplicate rule id '{rule.id}' (also rules[{seen[rule.id]}])"))
            seen.setdefault(rule.id, i)
            for name in rule.trigger:
                if name not in EVENTS:
                    found.append((f"rules.{i}.trigger", f"unknown event '{name}' (known: {', '.join(EVENTS)})"))
            for j, action in enumerate(rule.actions):
                if action.emit is not None and action.emit not in kinds:
                    found.append((f"rules.{i}.actions.{j}.emit", f"unknown reminder kind '{action.emit}'"))
                if action.transition is not None and action.transition not in EVENTS:
                    found.append((f"rules.{i}.actions.{j}.transition", f"unknown event '{action.transition}'"))
        for key, source in self.guards.items():
            if key not in GUARD_KEYS:
                found.append((f"guards.{key}", f"no transition '{key}' to guard (known: {', '.join(GUARD_KEYS)})"))
                continue
            try:
                self._guards[key] = Condition(source)
            except ValueError as exc:
                found.append((f"guards.{key}", str(exc)))
        if found:
            raise _LocatedError(found)
        return self

    @cached_property
    def kinds(self) -> dict[str, str]:
        """Reminder kind -> audience: the built-in kinds plus the protocol's own."""
        out = dict(BUILTIN_KINDS)
        out.update({k.kind: k.audience for k in self.reminders})
        return out

    def leads(self, kind: str) -> list[timedelta]:
        """The protocol's own lead times for ``kind`` (empty: use the clinic's)."""
        for k in self.reminders:
            if k.kind == kind:
                return [parse_duration(x) for x in k.leads]
        return []

    def guard(self, key: str) -> Condition | None:
        return self._guards.get(key)


class _LocatedError(ValueError):
    """Validation problems at locations (dotted, relative to the validator's model)."""

    def __init__(self, found: list[tuple[str, str]] | str, message: str = "") -> None:
        self.found = [(found, message)] if isinstance(found, str) else list(found)
        super().__init__("; ".join(m for _, m in self.found))


def problems(exc: Exception) -> list[tuple[str, str]]:
    """(location, message) pairs from a validation failure, locations as ``rules[2].when``."""
    if isinstance(exc, _LocatedError):
        return [(_dotted(loc.split(".")), message) for loc, message in exc.found]
    if not isinstance(exc, ValidationError):
        return [("(top)", str(exc))]
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _LocatedError):
            out.extend((_dotted(loc + where.split(".")), message) for where, message in ctx_error.found)
            continue
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        out.append((_dotted(loc), message.removeprefix("Value error, ")))
    return out


def _dotted(parts: list[str]) -> str:
    text = ""
    for part in parts:
        if part.isdigit():
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text or "(top)"


__all__ = [
    "ACTIVE_STATES",
    "FACTS",
    "Condition",
    "Protocol",
    "Rule",
    "problems",
]
