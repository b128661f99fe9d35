"""The exception tree. Every error a user can cause is an ``IptError`` whose ``str()``
is one line naming what was wrong and where.

    IptError
    ├── RuleFileError        a rule file (or several) failed to load; .problems lists each
    ├── InvalidInput         bad dates, times, zones, event data, CSV rows, ids
    │   ├── UnknownName      an unknown protocol, event, problem area or course
    │   └── CourseExists     a course id that is already taken
    ├── Refused              an event the course's state or a guard does not allow
    ├── ScheduleClash        a plan that books a therapist over another session (SPEC §9)
    ├── ConflictError        another writer changed the course first (reload and retry)
    ├── StoreError           the database cannot be reached, is not ours, is full or failed
    │   └── DatabaseBusy     another process held a lock past the wait bound (IPT_LOCK_TIMEOUT)
    └── SinkError            a sink cannot take a batch now (disk full, I/O error)

``shown(text)`` quotes a value for a message with its control characters escaped, so one
error stays one line and nothing reaches a terminal raw.
"""

from __future__ import annotations

from typing import TypeVar


class IptError(Exception):
    """Base of every error the engine raises on purpose. A message names parameters in the
    library's spelling (``start: ...``); ``names`` lists those it mentions after its first
    word, so the command line can say its options instead (``--from``)."""

    names: tuple[str, ...] = ()


_E = TypeVar("_E", bound=IptError)


def mentioning(exc: _E, *names: str) -> _E:
    """``exc`` with ``names``: the parameters its message mentions past its first word."""
    exc.names = names
    return exc


class RuleFileError(IptError):
    """One or more rule files are invalid; each problem reads ``FILE: location: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InvalidInput(IptError, ValueError):
    """Input data that cannot be accepted (names what and where). A ValueError too, so a
    pydantic validator that meets one reports it at the field it came from."""


class UnknownName(InvalidInput):
    """A name that is not known: protocol, event, problem area, course."""


class CourseExists(InvalidInput):
    """A course id that is already taken; nothing was written."""


class Refused(IptError):
    """An event the course does not allow now: which state, event and condition."""

    def __init__(self, event: str, state: str, reason: str) -> None:
        self.event = event
        self.state = state
        self.reason = reason
        super().__init__(f"event '{event}' refused in state '{state}': {reason}")


class ScheduleClash(IptError):
    """A new plan would book its therapist over a session already booked; nothing was written."""


class ConflictError(IptError):
    """Another writer changed the course since it was read: nothing was written.
    Reload the course and apply the event again."""

    def __init__(self, course_id: str, expected: int, found: int | None) -> None:
        self.course_id = course_id
        self.expected = expected
        self.found = found
        now = "no longer exists" if found is None else f"is at version {found}, not version {expected}"
        super().__init__(
            f"course '{course_id}' {now}: another writer changed it first; nothing was written "
            "(reload it and try again)"
        )


class StoreError(IptError):
    """The database cannot be reached, or its schema is not one this version can use."""


class SinkError(IptError):
    """A sink cannot take a batch now (a full disk, an I/O error, a file that is no longer a
    sink file): nothing of the batch was recorded delivered, and it goes out again later."""


class DatabaseBusy(StoreError):
    """Another process held a lock on the database for longer than the wait bound; nothing
    was changed. Trying again later may succeed."""


def shown(text: str) -> str:
    """``text`` quoted for a message, every non-printable character escaped (``'a\\nb'``)."""
    escaped = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return f"'{escaped}'"
