"""Values handed to the library, read the same way everywhere: a date, time, zone or instant
may be the Python value or its ISO text; a naive datetime is refused with one message.

Every function names the parameter it reads (``name``, in the library's spelling: ``start``,
``time``, ``tz``, ``at`` ...); the command line rewrites those names to its options.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, tzinfo
from zoneinfo import ZoneInfo

from .errors import InvalidInput
from .wallclock import check_year, parse_date, parse_instant, parse_time, zone

DateLike = str | date
TimeLike = str | time
ZoneLike = str | ZoneInfo
InstantLike = str | datetime


def naive_problem(name: str, value: datetime) -> InvalidInput:
    """The one message for a naive datetime, wherever it is given."""
    return InvalidInput(f"{name}: '{value.isoformat()}' has no UTC offset (give an aware datetime)")


def as_date(value: DateLike, name: str) -> date:
    """A date from ``date``, an aware ``datetime`` (its own local date) or 'YYYY-MM-DD'."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise naive_problem(name, value)
        check_year(value, name)
        return value.date()
    if isinstance(value, date):
        check_year(value, name)
        return value
    if isinstance(value, str):
        return parse_date(value, name)
    raise InvalidInput(f"{name}: {type(value).__name__} is not a date (a date or 'YYYY-MM-DD')")


def as_time(value: TimeLike, name: str) -> time:
    """A wall-clock time from ``time`` (whole minutes, no zone: the zone is ``tz``) or 'HH:MM'."""
    if isinstance(value, datetime):
        raise InvalidInput(f"{name}: a datetime is not a time of day (give a time, e.g. time(11, 0), or 'HH:MM')")
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise InvalidInput(f"{name}: '{value.isoformat()}' carries a zone; give the wall-clock time (zone: tz)")
        if value.second or value.microsecond:
            raise InvalidInput(f"{name}: '{value.isoformat()}' is not a whole minute")
        return value.replace(fold=0)
    if isinstance(value, str):
        return parse_time(value, name)
    raise InvalidInput(f"{name}: {type(value).__name__} is not a time (a time or 'HH:MM')")


def as_zone_name(value: ZoneLike, name: str) -> str:
    """The IANA name of ``value``: a ``ZoneInfo`` or its name ('Europe/London')."""
    key = value.key if isinstance(value, ZoneInfo) else value
    if not isinstance(key, str):
        raise InvalidInput(f"{name}: {type(value).__name__} is not a time zone (a ZoneInfo or an IANA name)")
    try:
        zone(key)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc}") from None
    return key


def as_instant(value: InstantLike, name: str, local: tzinfo | None = None) -> datetime:
    """An aware instant (in UTC) from an aware ``datetime`` or ISO 8601 text; text without an
    offset is wall-clock time in ``local`` (default UTC). A naive datetime is refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise naive_problem(name, value)
        check_year(value, name)
        return value.astimezone(UTC)
    if isinstance(value, str):
        return parse_instant(value, local if isinstance(local, ZoneInfo) else None, name)
    raise InvalidInput(f"{name}: {type(value).__name__} is not an instant (an aware datetime or ISO 8601 text)")


def as_choice(value: str, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; else InvalidInput listing them."""
    allowed = list(choices)
    if value not in allowed:
        raise InvalidInput(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value
