"""Use cases of a therapist's absences (SPEC §9): add one, list them, remove one. Adding or
removing replans every active or paused course of that therapist in the same transaction:
their planned sessions on those days move as for a clinic closure (or back), each moved
session's client gets a ``session_moved`` notice, and a clash the move makes raises a
``schedule_conflict`` alert (a forced replan is never refused)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from .core.absences import change_absences
from .core.clashes import bookings, new_bookings
from .core.errors import ConflictError, InvalidInput, StoreError, UnknownName, shown
from .core.lifecycle import reconcile
from .core.model import Absence, check_reference
from .core.planner import sessions
from .core.wallclock import parse_date
from .rulebook.files import Rulebook
from .services import protocol_of
from .storage.absences import handover_therapists
from .storage.bookings import BookingCheck
from .storage.sql import Replanned, SqlStore

_TRIES = 5
REASON_MAX = 200


@dataclass(frozen=True)
class AbsenceChange:
    absence: Absence
    courses: int  # courses replanned
    moved: int  # planned sessions that moved


def new_absence_id() -> str:
    return f"abs_{secrets.token_hex(8)}"


def check_absence(therapist: str, start: str, until: str, reason: str | None) -> tuple[str, Absence]:
    """The absence the options describe; InvalidInput naming the option otherwise."""
    check_reference(therapist, "therapist")
    first = parse_date(start, "--from")
    last = parse_date(until, "--until")
    if last < first:
        raise InvalidInput(f"--until: {last.isoformat()} is before --from {first.isoformat()}")
    if reason is not None:
        if len(reason) > REASON_MAX:
            raise InvalidInput(f"--reason: longer than {REASON_MAX} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in reason):
            raise InvalidInput("--reason: contains a control character")
    absence = Absence.model_validate({"id": new_absence_id(), "therapist": therapist, "from": first, "until": last,
                                      "reason": reason or None})  # fmt: skip
    return therapist, absence


def add_absence(
    store: SqlStore, rules: Rulebook, therapist: str, start: str, until: str, now: datetime, reason: str | None = None
) -> AbsenceChange:
    """Record the absence and move the therapist's planned sessions out of it."""
    _, absence = check_absence(therapist, start, until, reason)
    return _change(store, rules, absence, add=True, now=now)


def remove_absence(store: SqlStore, rules: Rulebook, absence_id: str, now: datetime) -> AbsenceChange:
    """Delete the absence; the sessions it moved go back where the series has them."""
    absence = store.absence(absence_id)
    if absence is None:
        raise UnknownName(f"unknown absence {shown(absence_id)}")
    return _change(store, rules, absence, add=False, now=now)


def list_absences(store: SqlStore, therapist: str | None = None) -> list[Absence]:
    if therapist is not None:
        check_reference(therapist, "therapist")
        return store.absences([therapist])
    return store.absences()


def _change(store: SqlStore, rules: Rulebook, absence: Absence, add: bool, now: datetime) -> AbsenceChange:
    note = {
        "absence": absence.id,
        "therapist": absence.therapist,
        "from": absence.start.isoformat(),
        "until": absence.until.isoformat(),
        "change": "added" if add else "removed",
    }
    buffer = rules.clinic.buffer()
    for _ in range(_TRIES):
        ids = store.absence_course_ids(absence.therapist)
        replanned: list[Replanned] = []
        moved = 0
        booked = store.booked([absence.therapist], buffer) if add else []
        for cid in ids:
            before = store.load(cid)
            if absence.therapist not in {before.therapist} | handover_therapists(before):
                continue
            kept = [a for a in before.absences if a.id != absence.id]
            absences = sorted([*kept, absence] if add else kept, key=lambda a: (a.start, a.until, a.id))
            protocol = protocol_of(rules, before)
            busy = sorted(b for b in booked if b.course != cid)
            after, p, effects, n = change_absences(before, protocol, rules.clinic, absences, now, note, busy, buffer)
            if before.rules_fingerprint != p.fingerprint:
                # The stored plan was made under other rules: compare with what is stored, not
                # with a recomputation under the rules in force (which would keep stale reminders).
                added, cancelled, shifted = reconcile(store.reminders(course=cid), p.reminders, now, after)
                effects = effects.model_copy(update={"added": added, "cancelled": cancelled, "rescheduled": shifted})
            if n == 0 and not effects.added and not effects.cancelled and not effects.rescheduled:
                continue
            moved += n
            was = bookings(before, sessions(before, protocol, rules.clinic), buffer)
            mine = bookings(after, p.sessions, buffer)
            booked = [*busy, *(b for b in mine if b.therapist == absence.therapist)]
            new = new_bookings(was, mine)
            check = BookingCheck(new, buffer, refuse=False, at=now) if new else None
            replanned.append(Replanned(before, after, p, effects, check))
        try:
            store.write_absence(absence, add, ids, replanned, now)
        except ConflictError:
            continue  # another writer changed one of these courses: read them again
        return AbsenceChange(absence, len(replanned), moved)
    raise StoreError(
        f"therapist {absence.therapist}: their courses kept changing while the absence was being "
        f"recorded ({_TRIES} tries); nothing was written: try again"
    )
