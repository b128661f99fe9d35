"""The exception tree. Every error a user can cause is an ``IptError`` whose ``str()``
is one line naming what was wrong and where.

    IptError
    ├── RuleFileError        a rule file (or several) failed to load; .problems lists each
    ├── InvalidInput         bad dates, times, zones, event data, CSV rows, ids
    │   └── UnknownName      an unknown protocol, event, problem area or course
    └── Refused              an event the course's state or a guard does not allow
"""

from __future__ import annotations


class IptError(Exception):
    """Base of every error the engine raises on purpose."""


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


class Refused(IptError):
    """An event the course does not allow now: which state, event and condition."""

    def __init__(self, event: str, state: str, reason: str) -> None:
        self.event = event
        self.state = state
        self.reason = reason
        super().__init__(f"event '{event}' refused in state '{state}': {reason}")
