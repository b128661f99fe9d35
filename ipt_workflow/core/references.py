"""What course ids, client references and therapist ids may hold, checked without the
models (so a read-only command that takes an id does not load pydantic)."""

from __future__ import annotations

import re

from .errors import InvalidInput, shown

REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
#: What course ids, client references and therapist ids may hold (said in error messages).
REFERENCE_RULE = "1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
_REFERENCE = re.compile(REFERENCE_PATTERN.strip("^$"))


def reference_problem(value: str, where: str, *, echo: bool = True) -> str:
    """The message for an id that breaks ``REFERENCE_RULE``; ``echo=False`` for a client
    reference, which a message never repeats (it may be a name)."""
    if not echo:
        return f"{where}: not a pseudonymous reference ({REFERENCE_RULE}; no spaces, never a name)"
    return f"{where}: {shown(value)} is not an id ({REFERENCE_RULE})"


def check_reference(value: str, where: str, *, echo: bool = True) -> str:
    """``value`` when it is a valid id; else InvalidInput (see ``reference_problem``)."""
    if not _REFERENCE.fullmatch(value):
        raise InvalidInput(reference_problem(value, where, echo=echo))
    return value
