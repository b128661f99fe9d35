"""Group use cases (SPEC §10): create a group, add a member, record a group event for the
group and every member in one transaction, show and list groups. The clock is read by the
caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .core.calendar import local_text
from .core.clashes import Ledger, bookings, group_bookings, new_bookings
from .core.errors import InvalidInput, IptError, Refused, UnknownName, shown
from .core.groups import (
    PRE_WINDOW_DAYS,
    active,
    attendance,
    free_pre_starts,
    group_event,
    group_protocol,
    group_sessions,
    member_course,
    members_event,
    moves,
    new_group,
    plan_of,
    regrouped,
    schedule_course,
    size_review,
    with_attendance,
)
from .core.model import (
    Course,
    Group,
    GroupState,
    HistoryEntry,
    Plan,
    Session,
    check_reference,
)
from .core.planner import plan, slot_warnings
from .core.protocol import Protocol
from .core.values import DateLike, InstantLike, TimeLike, ZoneLike, as_date, as_instant, as_time, as_zone_name
from .core.wallclock import check_ahead, parse_date, parse_time, zone
from .rulebook.files import Rulebook
from .services import _force, new_course_id
from .storage.bookings import BookingCheck
from .storage.sql import MemberChange, Rows, SqlStore

DEFAULT_MIN = 4
DEFAULT_MAX = 12


def new_group_id() -> str:
    return "grp_" + new_course_id().removeprefix("crs_")


def group_protocol_of(rules: Rulebook, group: Group) -> Protocol:
    protocol = rules.versions.get(group.protocol, {}).get(group.protocol_version)
    if protocol is None:
        raise UnknownName(f"group '{group.id}' follows {group.protocol} {group.protocol_version}, not in the rules")
    return protocol


@dataclass(frozen=True)
class GroupCreated:
    group: Group
    sessions: list[Session]
    warnings: list[str]


def create_group(
    store: SqlStore,
    rules: Rulebook,
    *,
    protocol_id: str,
    therapist: str,
    start: DateLike,
    time: TimeLike,
    tz: ZoneLike,
    now: datetime,
    cotherapist: str | None = None,
    group_id: str | None = None,
    min_size: int = DEFAULT_MIN,
    max_size: int = DEFAULT_MAX,
    allow_clash: bool = False,
) -> GroupCreated:
    """Create a group with its schedule. Raises InvalidInput (a non-group protocol, ``min >
    max``, a bad date), CourseExists, or ScheduleClash unless ``allow_clash``."""
    protocol = rules.named(protocol_id)
    group = new_group(
        protocol, group_id=group_id or new_group_id(), therapist=therapist, cotherapist=cotherapist,
        start=as_date(start, "start"), slot=as_time(time, "time"), timezone=as_zone_name(tz, "tz"),
        min_size=min_size, max_size=max_size, now=now,
    )  # fmt: skip
    absences = [a for a in store.absences([therapist]) if a.until >= group.start]
    if absences:
        group = group.model_copy(update={"absences": absences})
    all_sessions = group_sessions(group, protocol, rules.clinic)
    buffer = rules.clinic.buffer()
    new = group_bookings(group.id, therapist, cotherapist, group.timezone, all_sessions, buffer)
    check = BookingCheck(new, buffer, refuse=not allow_clash, at=now)
    stored = store.add_group(group, all_sessions, protocol.individual_first, now, check)
    probe = Course.model_construct(start=group.start, slot=group.slot)
    return GroupCreated(stored, all_sessions, slot_warnings(probe, rules.clinic))


@dataclass(frozen=True)
class MemberAdded:
    course: Course
    plan: Plan


def add_member(
    store: SqlStore,
    rules: Rulebook,
    group_id: str,
    *,
    client: str,
    now: datetime,
    course_id: str | None = None,
    pre: list[InstantLike] | None = None,
    allow_clash: bool = False,
) -> MemberAdded:
    """Create a member's course of ``group_id``: its pre-group session(s) at ``pre`` (local
    ISO in the group's zone, or with an offset), else in the therapist's first free
    working-hour slots in the 14 days before the group starts. Raises Refused (a full or
    finished group), InvalidInput, CourseExists or ScheduleClash; then nothing is written."""
    group = store.load_group(group_id)
    protocol = group_protocol_of(rules, group)
    if group.state is not GroupState.active:
        raise Refused("add", group.state.value, f"group {group.id} is {group.state.value}: it takes no new members")
    tz = zone(group.timezone)
    all_sessions = group_sessions(group, protocol, rules.clinic)
    first = all_sessions[0].start if all_sessions else None
    count = protocol.individual_first
    if pre:
        if len(pre) != count:
            raise InvalidInput(f"pre: {protocol.id} has {count} pre-group session(s); {len(pre)} given")
        starts = [as_instant(p, "pre", tz).astimezone(tz) for p in pre]
        late = next((s for s in starts if first is not None and s >= first), None)
        if late is not None:
            assert first is not None
            raise InvalidInput(f"pre: {local_text(late)} is not before the group's first session ({local_text(first)})")
    elif count:
        booked = store.booked([group.therapist], rules.clinic.buffer())
        starts = free_pre_starts(group, protocol, rules.clinic, booked, now, count, group.absences)
    else:
        starts = []
    course, p = member_course(group, protocol, rules.clinic, client=client, course_id=course_id or new_course_id(),
                             starts=starts, all_sessions=all_sessions, now=now)  # fmt: skip
    buffer = rules.clinic.buffer()
    check = BookingCheck(bookings(course, p.sessions, buffer), buffer, refuse=not allow_clash, at=now)
    stored = store.add_member(group, course, p, now, check)
    if stored.alerts:
        p = plan(stored, protocol, rules.clinic)
    return MemberAdded(stored, p)


@dataclass
class GroupJoins:
    """The rows of an ``ipt import`` with a ``group`` column: each joins that group as ``ipt
    group add`` does. ``read`` checks them against the stored groups (unknown, finished or
    full group; a therapist, protocol, start, time or zone that is not the group's: a
    ``LINE: message`` problem each); ``plan`` places their pre-group sessions in the
    therapists' free working hours after every other row is booked; ``check`` runs in the
    import's transaction: a group changed since it was read refuses the import."""

    rules: Rulebook
    good: list[tuple[int, dict[str, str], Group, Protocol]]
    problems: list[str]
    versions: dict[str, tuple[int, int]]  # group: (version read, members then)
    therapists: set[str]

    @classmethod
    def read(cls, store: SqlStore, rules: Rulebook, rows: list[Any]) -> GroupJoins:
        names = sorted({r.values["group"] for r in rows})
        groups = store.load_groups(names)
        counts = store.member_counts(names)
        read = dict(counts)
        good: list[tuple[int, dict[str, str], Group, Protocol]] = []
        problems: list[str] = []
        for row in rows:
            try:
                group, protocol = _join_row(rules, groups, counts, row.values)
            except IptError as exc:
                problems.append(f"{row.line}: {exc}")
                continue
            counts[group.id] = counts.get(group.id, 0) + 1
            good.append((row.line, row.values, group, protocol))
        versions = {g.id: (g.version, read[g.id]) for _, _, g, _ in good}
        return cls(rules, good, problems, versions, {g.therapist for _, _, g, _ in good})

    def check(self, conn: Any) -> None:
        """In the import's transaction: each group still active, at the version read, with room."""
        from .storage.groups import GroupStore

        GroupStore.check_joins(conn, self.versions)

    def plan(self, ledger: Ledger, now: datetime, sqlite: bool) -> tuple[list[str], Rows, list[Any]]:
        """(problems, rows, no further bookings to check): the member courses, their pre-group
        sessions in each therapist's first free working-hour slots (booked in ``ledger``)."""
        from .storage.new_rows import build_rows

        policy = self.rules.clinic
        schedules: dict[str, list[Session]] = {}
        built: list[tuple[Course, Plan]] = []
        problems: list[str] = []
        for line, values, group, protocol in self.good:
            all_sessions = schedules.get(group.id)
            if all_sessions is None:
                all_sessions = schedules[group.id] = group_sessions(group, protocol, policy)
            count = protocol.individual_first
            first = datetime.combine(group.start, group.slot, tzinfo=zone(group.timezone))
            lo, hi = first - timedelta(days=PRE_WINDOW_DAYS + 1), first + timedelta(days=1)
            try:
                busy = ledger.busy(group.therapist, lo, hi)
                starts = free_pre_starts(group, protocol, policy, [], now, count, group.absences, busy) if count else []
            except InvalidInput:
                problems.append(
                    f"{line}: group: therapist {group.therapist} has no free {protocol.duration_minutes}-minute slot "
                    f"in working hours in the {PRE_WINDOW_DAYS} days before group {group.id} starts ({group.start})"
                )
                continue
            course, p = member_course(group, protocol, policy, client=values["client"],
                                     course_id=values.get("id") or new_course_id(), starts=starts,
                                     all_sessions=all_sessions, now=now)  # fmt: skip
            slots = [(int(s.start.timestamp()), s.duration_minutes, s.number) for s in p.sessions
                     if s.format != "group" and s.status.value == "planned"]  # fmt: skip
            if slots:
                ledger.book(group.therapist, ledger._owner(course.id, group.therapist, group.timezone), slots)
            built.append((course, p))
        return problems, build_rows(built, now, sqlite), []


def _join_row(
    rules: Rulebook, groups: dict[str, Group], counts: dict[str, int], v: dict[str, str]
) -> tuple[Group, Protocol]:
    """The group an import row joins, checked (raises IptError naming the column)."""
    group = groups.get(v["group"])
    if group is None:
        raise UnknownName(f"group: unknown group {shown(v['group'])}")
    if not v.get("client"):
        raise InvalidInput("client: empty")
    check_reference(v["client"], "client", echo=False)
    if v.get("protocol"):
        named = rules.named(v["protocol"])
        if named.format != "group":
            raise InvalidInput(
                f"protocol: {named.id} is not a group protocol (format: {named.format}); group {group.id} follows "
                f"{group.protocol}"
            )
        pinned = "@" in v["protocol"] and named.version != group.protocol_version
        if named.id != group.protocol or pinned:
            raise InvalidInput(f"protocol: {v['protocol']} is not group {group.id}'s ({group.protocol} "
                               f"{group.protocol_version})")  # fmt: skip
    if v.get("therapist") and v["therapist"] != group.therapist:
        raise InvalidInput(f"therapist: {v['therapist']} is not group {group.id}'s ({group.therapist})")
    if v.get("start") and parse_date(v["start"], "start") != group.start:
        raise InvalidInput(f"start: {v['start']} is not group {group.id}'s start ({group.start})")
    if v.get("time") and parse_time(v["time"], "time") != group.slot:
        raise InvalidInput(f"time: {v['time']} is not group {group.id}'s time ({group.slot:%H:%M})")
    if v.get("tz") and v["tz"] != group.timezone:
        raise InvalidInput(f"tz: {v['tz']} is not group {group.id}'s zone ({group.timezone})")
    if group.state is not GroupState.active:
        raise InvalidInput(f"group: group {group.id} is {group.state.value}: it takes no new members")
    n = counts.get(group.id, 0)
    if n >= group.max:
        raise InvalidInput(f"group: group {group.id} is full ({n} of {group.max} members)")
    protocol = group_protocol_of(rules, group)
    return group, protocol


@dataclass(frozen=True)
class GroupApplied:
    group: Group
    sessions: list[Session]
    members: list[Course]


_MOVES = ("reschedule_session", "change_slot", "change_therapist")


def apply_group_event(
    store: SqlStore,
    rules: Rulebook,
    group_id: str,
    event: str,
    at: datetime,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> GroupApplied:
    """Apply a group event to the group and each member in one transaction (all or nothing).

    ``hold_session`` with ``{absent: [course ids]}``: the present active members get
    ``hold_session``, the absent ones ``miss_session`` (paused members neither);
    ``cancel_session`` cancels it for every active member; ``reschedule_session``,
    ``change_slot`` and ``change_therapist`` move the group's sessions for every member (each
    told by a ``session_moved`` notice); ``complete`` completes the members in termination.
    Raises UnknownName, InvalidInput, Refused, ConflictError or ScheduleClash."""
    check_ahead(at, now, "at")
    data, force = _force(event, data) if event in _MOVES else (data, False)
    group = store.load_group(group_id)
    protocol = group_protocol_of(rules, group)
    policy = rules.clinic
    if data is not None and not isinstance(data, dict):
        raise InvalidInput(f"event '{event}' data: must be a JSON object")
    absent = list((data or {}).get("absent", []) or []) if event == "hold_session" else []
    members = store.members(group.id)
    known = {m.id for m in members}
    stranger = next((a for a in absent if not isinstance(a, str) or a not in known), None)
    if stranger is not None:
        raise InvalidInput(f"event '{event}' data: absent: {stranger!r} is not a member of group {group.id}")
    before_sessions = group_sessions(group, protocol, policy)
    after, note = group_event(group, event, at, protocol, policy, data)
    after_sessions = group_sessions(after, protocol, policy)
    gp = plan_of(after, after_sessions, protocol.individual_first)
    moved = moves(before_sessions, after_sessions)
    done, present_ids, absent_ids = members_event(group, event, note, members, absent, moved, at, protocol, policy)
    changes = [_replanned(m, gp, protocol, policy, at, None if new is None else (new, history))
               for m, new, history in done]  # fmt: skip
    if event == "hold_session":
        after = with_attendance(after, present_ids, absent_ids)
    check = None
    if event in _MOVES:
        buffer = policy.buffer()
        was = group_bookings(group.id, group.therapist, group.cotherapist, group.timezone, before_sessions, buffer)
        now_ = group_bookings(group.id, group.therapist, group.cotherapist, group.timezone, after_sessions, buffer)
        new_ = new_bookings(was, now_)
        if new_:
            check = BookingCheck(new_, buffer, refuse=not force, at=now)
    stored, courses = store.save_group(group, after, after_sessions, protocol.individual_first, changes, now, check)
    return GroupApplied(stored, after_sessions, courses)


def _replanned(
    before: Course,
    gp: Any,
    protocol: Protocol,
    policy: Any,
    at: datetime,
    changed: tuple[Course, list[HistoryEntry]] | None,
) -> MemberChange:
    """A member's change as the store takes it (``core.groups.regrouped``)."""
    new, p, effects = regrouped(before, gp, protocol, policy, at, changed)
    return MemberChange(before, new, p, effects)


def size_alert(store: SqlStore, before: Course, after: Course, at: datetime) -> Course:
    """``after`` with a ``group_size_review`` alert when this member's change took its group's
    active members below the group's minimum."""
    if after.group is None or before.state == after.state:
        return after
    states = store.member_states(after.group)
    group = store.load_group(after.group)
    was = active({**states, before.id: before.state})
    now = active({**states, after.id: after.state})
    alert = size_review(after, group, was, now, at)
    if alert is None or any(a.id == alert.id for a in after.alerts):
        return after
    return after.model_copy(update={"alerts": sorted([*after.alerts, alert], key=lambda a: (a.due, a.id))})


def group_json(store: SqlStore, rules: Rulebook, group_id: str) -> dict[str, Any]:
    """SPEC §10's group JSON."""
    group = store.load_group(group_id)
    protocol = group_protocol_of(rules, group)
    who = attendance(group)
    members = store.members(group.id)
    return {
        "id": group.id,
        "protocol": group.protocol,
        "protocol_version": group.protocol_version,
        "therapist": group.therapist,
        "cotherapist": group.cotherapist,
        "timezone": group.timezone,
        "state": group.state.value,
        "min": group.min,
        "max": group.max,
        "sessions": [
            {
                "number": s.number,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "status": s.status.value,
                "therapist": s.therapist,
                "original_start": s.original_start.isoformat() if s.original_start else None,
                "present": who.get(s.number, ([], []))[0],
                "absent": who.get(s.number, ([], []))[1],
            }
            for s in group_sessions(group, protocol, rules.clinic)
        ],
        "members": [{"course": m.id, "client": m.client, "state": m.state.value} for m in members],
    }


def group_session_events(store: SqlStore, rules: Rulebook, group_id: str, stamp: datetime) -> list[tuple[int, Any]]:
    """(number, VEVENT) of each group session, as ``group_calendar`` writes them."""
    from .interop.ics import group_events

    group = store.load_group(group_id)
    protocol = group_protocol_of(rules, group)
    all_sessions = group_sessions(group, protocol, rules.clinic)
    events = group_events(schedule_course(group, protocol), all_sessions, stamp)
    return [(s.number, e) for s, e in zip(all_sessions, events, strict=True)]


def group_ics(store: SqlStore, rules: Rulebook, group_id: str, stamp: datetime) -> bytes:
    """The group's calendar: one VEVENT per group session (SPEC §9's ICS: stable UID,
    SEQUENCE, LAST-MODIFIED, cancelled ones ``STATUS:CANCELLED``), no client references."""
    from .interop.ics import group_calendar

    group = store.load_group(group_id)
    protocol = group_protocol_of(rules, group)
    return group_calendar(schedule_course(group, protocol), group_sessions(group, protocol, rules.clinic), stamp)


__all__ = ["add_member", "apply_group_event", "create_group", "group_ics", "group_json", "group_protocol", "size_alert"]
