"""Clinic policy (``clinic.yaml``) as validated data: the calendar (working days and hours,
holidays, closures), reminder leads and quiet hours, attendance, the digest cron, the
session buffer. Split from ``protocol`` (the protocol files), whose validation base it uses."""

from __future__ import annotations

from contextlib import suppress
from datetime import date, time, timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from .model import empty_list
from .protocol import MAX_SESSION_BUFFER, _check_schema, _LocatedError, _Strict
from .wallclock import check_year, format_duration, parse_duration, parse_time, zone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Hours(_Strict):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        parse_time(v)
        return v

    @cached_property
    def start_time(self) -> time:
        return parse_time(self.start)

    @cached_property
    def end_time(self) -> time:
        return parse_time(self.end)


class HolidayRegion(_Strict):
    country: str
    subdivision: str | None = None


class Attendance(_Strict):
    attendance_review_after: int = Field(default=2, ge=1)
    discharge_review_after: int = Field(default=3, ge=1)
    no_show_after: str = "15m"
    late_cancel_window: str = "24h"

    @field_validator("no_show_after", "late_cancel_window")
    @classmethod
    def _duration(cls, v: str, info: ValidationInfo) -> str:
        parse_duration(v, str(info.field_name))
        return v


_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def check_cron(expr: str) -> str:
    """A standard five-field crontab expression (numbers or names; ``*``, lists, ranges and
    steps), checked here so a bad one is a load error; the daemon schedules it with
    APScheduler, and what passes here APScheduler takes. Day of week as in crontab(5): 0 and
    7 are Sunday, and a range may wrap round the week's end (``fri-mon``)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"'{expr}' is not a crontab expression: 5 fields (minute hour day month weekday) expected")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.lower().split(","):
            problem = _cron_part_problem(part, name, low, high, names)
            if problem:
                raise ValueError(f"'{expr}': {name}: {problem}")
    days, months = _cron_values(fields[2], 1, 31, ()), _cron_values(fields[3], 1, 12, _CRON_FIELDS[3][3])
    if not any(day <= _MONTH_DAYS[month - 1] for day in days for month in months):
        raise ValueError(f"'{expr}': never fires (no such day in those months)")
    return expr


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _cron_values(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values a checked crontab field names."""
    out: set[int] = set()
    for part in text.lower().split(","):
        body, slash, step_text = part.partition("/")
        bounds = [names.index(v) + 1 if v in names else int(v) for v in body.split("-")] if body != "*" else []
        first, last = (bounds[0], bounds[-1]) if bounds else (low, high)
        if slash and len(bounds) == 1:
            last = high
        out.update(range(first, last + 1, int(step_text) if slash else 1))
    return out


def _cron_part_problem(part: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    body, slash, step_text = part.partition("/")
    if slash and not (step_text.isdigit() and 0 < int(step_text) <= high):
        return f"bad step '{step_text}' (1-{high})"
    step = int(step_text) if slash else 0
    if body == "*":
        if step > high - low and name != "day of week":
            return f"step {step} is larger than the range {low}-{high}"
        return None
    bounds = body.split("-")
    if len(bounds) > 2 or not all(bounds):
        return f"cannot read '{part}'"
    values: list[int] = []
    for value in bounds:
        if value in names:
            values.append(names.index(value) + (0 if name == "day of week" else 1))
        elif value.isdigit() and low <= int(value) <= high:
            values.append(int(value))
        else:
            return f"'{value}' is not in {low}-{high}"
    if name == "day of week":  # read by our own day-name expansion: wraps, any step
        return None
    if any(v in names for v in bounds) and (step or not all(v in names for v in bounds)):
        return f"'{part}': write a range of names without a step, or use numbers"
    first, last = values[0], values[-1]
    if first > last:
        return f"range '{body}' runs backwards"
    if step and step > (last if len(values) == 2 else high) - first:
        return f"step {step} is larger than the range {first}-{last if len(values) == 2 else high}"
    return None


class Digest(_Strict):
    """The therapist digest: ``cron`` in the clinic's zone; null turns digests off."""

    cron: str | None = "0 8 * * mon-fri"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return check_cron(v) if v else None


class FhirSystems(_Strict):
    """Identifier systems of the FHIR export (``fhir:`` in clinic.yaml): Patient and
    Practitioner are referenced by identifier; our own resources carry ``{system}/course`` etc."""

    patient_system: str = "urn:ipt-workflow:client"
    practitioner_system: str = "urn:ipt-workflow:therapist"
    system: str = "urn:ipt-workflow"


def _one_country(country: str, subdivision: str | None) -> Any:
    """``holidays.country_holidays`` for one country, importing that country's module alone:
    importing any module of the package ``holidays.countries`` runs its ``__init__``, which
    imports all 250 countries (100 ms and more on every command that loads the rules). The
    package is registered without running its ``__init__`` when no one imported it yet; the
    library's lazy loaders import its modules by their full names, so they still work."""
    import importlib
    import importlib.util
    import sys

    import holidays
    from holidays.registry import COUNTRIES

    name = next((m for m, names in COUNTRIES.items() if country in names[1:]), None)
    if name is None or "holidays.countries" in sys.modules:
        return holidays.country_holidays(country, subdiv=subdivision)
    spec = importlib.util.find_spec("holidays.countries")
    if spec is None:
        return holidays.country_holidays(country, subdiv=subdivision)
    sys.modules["holidays.countries"] = importlib.util.module_from_spec(spec)
    cls = getattr(importlib.import_module(f"holidays.countries.{name}"), COUNTRIES[name][0])
    return cls(subdiv=subdivision)


class ClinicPolicy(_Strict):
    """The clinic's calendar and reminder policy (``rules/clinic.yaml``)."""

    schema_version: int
    timezone: str
    working_days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    working_hours: Hours
    holidays: HolidayRegion | None = None
    closures: list[date] = Field(default_factory=empty_list, max_length=5000)
    holiday_policy: Literal["next_working_day", "skip"] = "next_working_day"
    quiet_hours: Hours | None = None
    reminder_leads: list[str] = Field(default_factory=lambda: ["72h", "24h"], max_length=10)
    session_buffer: str = "0m"
    attendance: Attendance = Field(default_factory=Attendance)
    digest: Digest = Field(default_factory=Digest)
    #: This deployment's id in digest ids; default: made once and kept in the database.
    site: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    fhir: FhirSystems = Field(default_factory=lambda: FhirSystems())
    _holidays: Any = PrivateAttr(default=None)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, v: int) -> int:
        return _check_schema(v)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)
        return v

    @field_validator("closures", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> Any:
        # YAML gives dates; JSON gives strings: accept both, strictly ISO.
        if isinstance(v, list):
            return [date.fromisoformat(x) if isinstance(x, str) else x for x in v]
        return v

    @field_validator("closures")
    @classmethod
    def _in_range(cls, v: list[date]) -> list[date]:
        for day in v:
            check_year(day, "closures")
        return v

    @field_validator("reminder_leads")
    @classmethod
    def _leads(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_duration(item, "reminder_leads")
        return v

    @field_validator("session_buffer")
    @classmethod
    def _buffer(cls, v: str) -> str:
        if parse_duration(v, "session_buffer") > MAX_SESSION_BUFFER:
            raise ValueError(f"'{v}' is longer than {format_duration(MAX_SESSION_BUFFER)}")
        return v

    def buffer(self) -> timedelta:
        """``session_buffer`` as a duration: how long a therapist stays booked after a session."""
        return parse_duration(self.session_buffer, "session_buffer")

    @model_validator(mode="after")
    def _calendar(self) -> ClinicPolicy:
        if self.holidays is not None:
            import holidays

            region = self.holidays
            # The usual case first: a country's own code and one of its subdivision codes
            # load that country alone; listing every supported country imports them all
            # (about 150 ms on every command that loads the rules).
            with suppress(NotImplementedError):
                found = _one_country(region.country, region.subdivision)
                if found.country == region.country and region.subdivision in (None, *found.subdivisions):
                    self._holidays = found
                    return self
            supported = holidays.list_supported_countries()
            if region.country not in supported:
                raise _LocatedError("holidays.country", f"unknown country '{region.country}' (ISO 3166 alpha-2)")
            if region.subdivision is not None and region.subdivision not in supported[region.country]:
                raise _LocatedError(
                    "holidays.subdivision",
                    f"unknown subdivision '{region.subdivision}' of {region.country} "
                    f"(known: {', '.join(supported[region.country])})",
                )
            self._holidays = holidays.country_holidays(region.country, subdiv=region.subdivision)
        return self

    @cached_property
    def closed_days(self) -> frozenset[date]:
        return frozenset(self.closures)

    @cached_property
    def working_weekdays(self) -> frozenset[int]:
        return frozenset(WEEKDAYS.index(d) for d in self.working_days)

    @cached_property
    def lead_times(self) -> list[timedelta]:
        return [parse_duration(x) for x in self.reminder_leads]

    def is_closed(self, day: date) -> bool:
        """A public holiday or a closure date."""
        cache = self.__dict__.get("_closed")  # a plain dict: private attrs are slow to reach
        if cache is None:
            cache = self.__dict__["_closed"] = {}
        known = cache.get(day)
        if known is None:
            known = day in self.closed_days or (self._holidays is not None and day in self._holidays)
            cache[day] = known
        return bool(known)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.working_weekdays and not self.is_closed(day)
