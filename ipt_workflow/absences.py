"""Use cases of a therapist's absences (SPEC §9): add one, list them, remove one. Adding or
removing replans every active or paused course of that therapist in the same transaction:
their planned sessions on those days move as for a clinic closure (or back), each moved
session's client gets a ``session_moved`` notice, and a clash the move makes raises a
``schedule_conflict`` alert (a forced replan is never refused)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from .core.absences import ABSENCE_EVENT, change_absences
from .core.clashes import Booking, bookings, group_bookings, new_bookings
from .core.errors import ConflictError, InvalidInput, StoreError, UnknownName, mentioning, shown
from .core.lifecycle import reconcile
from .core.model import ACTIVE_STATES, Absence, Course, SessionStatus, check_reference
from .core.moves import notice, with_notice
from .core.planner import sessions
from .core.values import DateLike, as_date
from .rulebook.files import Rulebook
from .services import protocol_of
from .storage.absences import handover_therapists
from .storage.bookings import BookingCheck
from .storage.sql import GroupReplanned, Replanned, SqlStore

_TRIES = 5
REASON_MAX = 200


class AbsenceChange(BaseModel):
    """An absence added or removed: ``courses`` replanned, planned sessions ``moved``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    absence: Absence
    courses: int
    moved: int


def new_absence_id() -> str:
    return f"abs_{secrets.token_hex(8)}"


def check_absence(therapist: str, start: DateLike, until: DateLike, reason: str | None) -> tuple[str, Absence]:
    """The absence the options describe; InvalidInput naming the option otherwise."""
    check_reference(therapist, "therapist")
    first = as_date(start, "start")
    last = as_date(until, "until")
    if last < first:
        raise mentioning(InvalidInput(f"until: {last.isoformat()} is before start {first.isoformat()}"), "start")
    if reason is not None:
        if len(reason) > REASON_MAX:
            raise InvalidInput(f"reason: longer than {REASON_MAX} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in reason):
            raise InvalidInput("reason: contains a control character")
    absence = Absence.model_validate({"id": new_absence_id(), "therapist": therapist, "from": first, "until": last,
                                      "reason": reason or None})  # fmt: skip
    return therapist, absence


def add_absence(
    store: SqlStore,
    rules: Rulebook,
    therapist: str,
    start: DateLike,
    until: DateLike,
    now: datetime,
    reason: str | None = None,
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
        groups, regrouped, booked, moved = _groups(store, rules, absence, add, now, note, booked)
        for cid in ids:
            before = store.load(cid)
            if before.group in regrouped:
                member = _member(rules, before, absence, add, now, note, regrouped[before.group])
                if member is not None:
                    replanned.append(member)
                continue
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
            store.write_absence(absence, add, ids, replanned, now, groups)
        except ConflictError:
            continue  # another writer changed one of these courses: read them again
        return AbsenceChange(absence=absence, courses=len(replanned) + len(groups), moved=moved)
    raise StoreError(
        f"therapist {absence.therapist}: their courses kept changing while the absence was being "
        f"recorded ({_TRIES} tries); nothing was written: try again"
    )


#: A group an absence change moved: its members' new ``GroupPlan`` and the group sessions it
#: moved (number: (old start, new start)).
Regrouped = tuple[Any, dict[int, tuple[datetime, datetime]]]


def _groups(
    store: SqlStore,
    rules: Rulebook,
    absence: Absence,
    add: bool,
    now: datetime,
    note: dict[str, str],
    booked: list[Booking],
) -> tuple[list[GroupReplanned], dict[str, Regrouped], list[Booking], int]:
    """The active groups the absent therapist leads, replanned as their schedule course: the
    group sessions on the absent days move as for a closure (or back, when it is removed).
    Returns the groups to write, per moved group its members' new plan and moves, the
    therapist's bookings after them, and how many group sessions moved."""
    from .core.groups import group_protocol, group_sessions, plan_of, schedule_course
    from .groups import group_protocol_of

    buffer = rules.clinic.buffer()
    out: list[GroupReplanned] = []
    regrouped: dict[str, Regrouped] = {}
    moved = 0
    for gid in store.active_group_ids(absence.therapist):
        group = store.load_group(gid)
        protocol = group_protocol_of(rules, group)
        kept = [a for a in group.absences if a.id != absence.id]
        absences = sorted([*kept, absence] if add else kept, key=lambda a: (a.start, a.until, a.id))
        busy = sorted(b for b in booked if b.course != gid)
        schedule, _, _, n = change_absences(
            schedule_course(group, protocol), group_protocol(protocol), rules.clinic, absences, now, note, busy, buffer
        )
        if n == 0:
            continue
        moved += n
        after = group.model_copy(update={"sessions": schedule.sessions, "history": schedule.history,
                                         "absences": absences})  # fmt: skip
        was_sessions = group_sessions(group, protocol, rules.clinic)
        now_sessions = group_sessions(after, protocol, rules.clinic)
        moves = {s.number: (s.start, t.start) for s in was_sessions for t in now_sessions
                 if s.number == t.number and t.status is SessionStatus.planned and s.start != t.start}  # fmt: skip
        was = group_bookings(gid, group.therapist, group.cotherapist, group.timezone, was_sessions, buffer)
        mine = group_bookings(gid, group.therapist, group.cotherapist, group.timezone, now_sessions, buffer)
        new = new_bookings(was, mine)
        check = BookingCheck(new, buffer, refuse=False, at=now) if new else None
        booked = [*busy, *(b for b in mine if b.therapist == absence.therapist)]
        out.append(GroupReplanned(group, after, now_sessions, protocol.individual_first, check))
        regrouped[gid] = (plan_of(after, now_sessions, protocol.individual_first), moves)
    return out, regrouped, booked, moved


def _member(
    rules: Rulebook,
    before: Course,
    absence: Absence,
    add: bool,
    now: datetime,
    note: dict[str, str],
    regrouped: Regrouped,
) -> Replanned | None:
    """A member of a group the absence moved: its pre-group sessions replanned as any
    course's, its group sessions at the group's new times, each moved one told to the client
    (``session_moved``)."""
    from .core.groups import member_number
    from .groups import _replanned

    gp, moves = regrouped
    protocol = protocol_of(rules, before)
    kept = [a for a in before.absences if a.id != absence.id]
    absences = sorted([*kept, absence] if add else kept, key=lambda a: (a.start, a.until, a.id))
    regrouped_course = before.model_copy(update={"group_plan": gp})
    after, _, effects, _ = change_absences(regrouped_course, protocol, rules.clinic, absences, now, note)
    if after.state in ACTIVE_STATES:
        for number, (old, start) in moves.items():
            told = notice(after, ABSENCE_EVENT, "session_moved", member_number(protocol, number), start, now,
                          rules.clinic, old)  # fmt: skip
            if told is not None:
                after = after.model_copy(update={"alerts": with_notice(after.alerts, told)})
    change = _replanned(before, gp, protocol, rules.clinic, now, (after, effects.history))
    buffer = rules.clinic.buffer()
    was = bookings(before, sessions(before, protocol, rules.clinic), buffer)
    new = new_bookings(was, bookings(change.after, change.plan.sessions, buffer))
    check = BookingCheck(new, buffer, refuse=False, at=now) if new else None
    return Replanned(change.before, change.after, change.plan, change.effects, check)
