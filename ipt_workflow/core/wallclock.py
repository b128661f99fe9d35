"""Local wall-clock time to instants and back, the RFC 5545 way, plus duration parsing.

A local time that does not exist (in a spring-forward gap) is read with the UTC offset
in force before the gap, so 02:30 in a one-hour gap becomes 03:30; an ambiguous local
time (in a fall-back overlap) is its first occurrence. Python's ``fold=0`` means exactly
that, so the conversion is ``datetime.combine(...).astimezone(UTC)``.

Every date and instant a user gives is in the years ``MIN_YEAR`` to ``MAX_YEAR`` (checked
here, where they are read), and every duration at most ``MAX_DURATION``, so nothing the
planner adds to them can leave Python's date range.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+)\s*(w|d|h|m|min)\s*$")
_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "min": "minutes"}
MIN_YEAR, MAX_YEAR = 1970, 2200
MAX_DURATION = timedelta(weeks=520)  # ten years: no lead, follow-up or window is longer
MAX_AHEAD = timedelta(days=1)  # how far past "now" an event may be dated

# An IANA name: letters, digits, '_', '+' and '-' in '/'-separated parts, never '.' (so no
# '..'). The zoneinfo directory also holds files that are not zones of the database:
# 'localtime' (this machine's setting), 'posixrules', 'Factory' ("local time zone must be
# set"), and the 'posix/' and 'right/' copies.
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules", "leapseconds"})


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises InvalidInput naming it when it is not one."""
    try:
        if (
            not isinstance(name, str)
            or len(name) > 64
            or not _ZONE_NAME.match(name)
            or name in _NOT_ZONES
            or name.startswith(("posix/", "right/"))
        ):
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:  # "Europe" is a directory
        raise InvalidInput(f"'{name}' is not an IANA time zone (such as Europe/London)") from exc


def check_year(value: date, where: str, shown: object = None) -> None:
    """Raise InvalidInput naming ``where`` unless ``value`` (a date, or a datetime as given,
    before any conversion) is in the years MIN_YEAR to MAX_YEAR."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        text = value.isoformat() if shown is None else shown
        raise InvalidInput(f"{where}: '{text}' is outside the years {MIN_YEAR} to {MAX_YEAR}")


def check_ahead(at: datetime, now: datetime, where: str = "at") -> None:
    """Raise InvalidInput unless ``at`` is at most MAX_AHEAD after ``now``: an event is
    recorded when it happens, and one dated far ahead would refuse every later event."""
    if at - now > MAX_AHEAD:
        raise InvalidInput(
            f"{where}: {iso_utc(at)} is more than 1 day after now ({iso_utc(now)}); record an event when it happens"
        )


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The aware local datetime for wall-clock ``at`` on ``day`` in ``tz`` (RFC 5545 rules).

    The result carries the offset actually in force, so a gap time comes back moved.
    """
    if at.tzinfo is not None or at.fold:
        at = at.replace(tzinfo=None, fold=0)
    return datetime.combine(day, at, tz).astimezone(UTC).astimezone(tz)


def parse_duration(text: str, where: str = "duration") -> timedelta:
    """'72h', '7d', '2w', '30m' -> timedelta; raises InvalidInput naming ``where``."""
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidInput(f"{where}: '{text}' is not a duration like 72h, 7d, 2w or 30m")
    digits, unit = match.group(1).lstrip("0") or "0", match.group(2)
    value = None if len(digits) > 9 else timedelta(**{_UNIT[unit]: int(digits)})
    if value is None or value > MAX_DURATION:
        raise InvalidInput(f"{where}: '{text}' is longer than {format_duration(MAX_DURATION)} (10 years)")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest of 'Nw', 'Nd', 'Nh', 'Nm' that states ``value`` exactly."""
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def parse_date(text: str, where: str = "date") -> date:
    """An ISO date 'YYYY-MM-DD'; raises InvalidInput naming ``where``."""
    try:
        value = date.fromisoformat(str(text).strip())
    except ValueError as exc:
        raise InvalidInput(f"{where}: '{text}' is not a date (YYYY-MM-DD)") from exc
    check_year(value, where, text)
    return value


def parse_time(text: str, where: str = "time") -> time:
    """A local time 'HH:MM'; raises InvalidInput naming ``where``."""
    match = re.match(r"^([01]\d|2[0-3]):([0-5]\d)$", str(text).strip())
    if not match:
        raise InvalidInput(f"{where}: '{text}' is not a time (HH:MM, 00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def parse_instant(text: str, tz: ZoneInfo | None = None, where: str = "time") -> datetime:
    """An ISO 8601 date-time; a naive one is read as wall-clock time in ``tz`` (or UTC).

    Returns an aware datetime in UTC; raises InvalidInput naming ``where`` (also for a year
    outside MIN_YEAR to MAX_YEAR as written).
    """
    raw = str(text).strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError as exc:
        raise InvalidInput(f"{where}: '{text}' is not an ISO 8601 date-time") from exc
    check_year(value, where, text)
    if value.tzinfo is None:
        value = local_instant(value.date(), value.time(), tz) if tz else value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """UTC ISO 8601 with a 'Z'-free '+00:00' offset, seconds precision."""
    return value.astimezone(UTC).isoformat(timespec="seconds")
