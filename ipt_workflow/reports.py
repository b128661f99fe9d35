"""The course report and the caseload (SPEC §13): read the stored course shape and the
reminders with their delivery, hand them to ``present.report``. Reads only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.model import ACTIVE_STATES
from .core.wallclock import zone
from .present import report as page
from .storage.reads import course_document, course_ids, delivery_documents

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: The course shape of a course stored before plans were kept with courses (ask the planner).
Fallback = Callable[[str], dict[str, Any]]


def course_shape(db: str | Engine, course_id: str, fallback: Fallback) -> dict[str, Any]:
    """The course shape of SPEC §7; raises UnknownName for an unknown id."""
    return course_document(db, course_id) or fallback(course_id)


def course_report(db: str | Engine, course_id: str, now: datetime, fallback: Fallback) -> str:
    """The report of one course as one self-contained HTML document; ``now`` places
    "today" and the course week. Raises UnknownName for an unknown id."""
    doc = course_shape(db, course_id, fallback)
    return page.render_report(page.report_view(doc, delivery_documents(db, course_id), now))


def caseload(db: str | Engine, therapist: str | None, now: datetime, fallback: Fallback) -> list[dict[str, Any]]:
    """One row per active course (of ``therapist``, when given), by course id: see
    ``present.report.caseload_row``."""
    states = tuple(s.value for s in sorted(ACTIVE_STATES))
    return [
        page.caseload_row(course_shape(db, cid, fallback), delivery_documents(db, cid), now)
        for cid in course_ids(db, states, therapist)
    ]


def caseload_html(rows: list[dict[str, Any]], therapist: str | None, now: datetime, timezone: str) -> str:
    """The caseload page; ``timezone`` (the clinic's) shows when it was made."""
    return page.render_caseload(page.caseload_view(rows, therapist, now, zone(timezone)))


def check_out(path: Path, where: str = "--out") -> None:
    """Raise InvalidInput naming ``where`` and ``path`` when a page cannot go there (a
    directory, or a missing one), before anything is read."""
    from .core.errors import InvalidInput

    if path.is_dir():
        raise InvalidInput(f"{where} {path}: is a directory")
    if not path.parent.is_dir():
        raise InvalidInput(f"{where} {path}: directory {path.parent} does not exist")


def write_page(path: Path, html: str, where: str = "--out") -> None:
    """Write ``html`` to ``path`` whole or not at all (a temporary file beside it, renamed).
    Raises InvalidInput naming ``where`` and the path when it cannot be written."""
    import os
    import tempfile

    from .core.errors import InvalidInput

    check_out(path, where)
    parent = path.parent
    try:
        fd, temp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InvalidInput(f"{where} {path}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html)
        os.chmod(temp, 0o600)  # it names clients by reference: private like the database
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
