"""Groups (SPEC §10): a group's row (its schedule, recorded sessions and calendar history),
its members' courses, and the writes that change a group and its members in one
transaction."""

from __future__ import annotations

import os
import sys
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..core.clashes import conflict_alert
from ..core.errors import ConflictError, CourseExists, Refused, UnknownName, shown
from ..core.model import Course, CourseState, Effects, Group, GroupState, HistoryEntry, Plan, Session
from ..core.planner import reminder_id
from . import schema as t
from .base import chunks
from .bookings import BookingCheck
from .course_sql import with_alerts
from .courses import CourseStore
from .new_rows import build_rows
from .rows import group_plan_lists

#: Test hook: seconds to sleep between two members' writes of a group event (inside its
#: transaction), so a test can kill the process half-way through.
PAUSE_ENV = "IPT_TEST_GROUP_WRITE_PAUSE"


@dataclass(frozen=True)
class MemberChange:
    """One member course changed by a group event, as ``CourseStore.save`` takes it."""

    before: Course
    after: Course
    plan: Plan
    effects: Effects


class GroupStore(CourseStore):
    def _group_clashes(self, conn: Connection, group_id: str, booking: BookingCheck) -> None:
        """Check a group's new bookings; a clash booked anyway (a forced replan, or allowed) is
        a ``schedule_conflict`` therapist alert naming the other session, kept with the group's
        first active member course (a group has no reminders of its own; with no member yet,
        the clash is only refused or booked)."""
        found = self._check_bookings(conn, booking, group_id)
        if not found:
            return
        c = t.courses.c
        running = sorted(s.value for s in CourseState if s not in (CourseState.completed, CourseState.withdrawn))

        def first_member(gid: str) -> str | None:
            query = select(c.id).where(c.group_id == gid, c.state.in_(running)).order_by(c.id).limit(1)
            return conn.execute(query).scalar()

        rows = []
        for mine, other in found:
            rule = f"clash:{other.course}#{other.session}"
            member = first_member(group_id)
            if member is None:  # kept with the other side: its course, or its group's first member
                is_course = conn.execute(select(c.id).where(c.id == other.course)).scalar() is not None
                member = other.course if is_course else first_member(other.course)
                rule = f"clash:{group_id}#{mine.session}"
            if member is None:
                continue
            rows.append({
                "course_id": member, "id": reminder_id(member, "schedule_conflict", mine.session, mine.local, rule),
                "kind": "schedule_conflict", "audience": "therapist", "due": booking.at, "session": None,
                "status": "pending", "rule": rule, "attempts": 0,
            })  # fmt: skip
        known = set(conn.execute(select(t.reminders.c.id).where(t.reminders.c.course_id == member)).scalars())
        fresh = [r for r in rows if r["id"] not in known]
        if fresh:
            conn.execute(insert(t.reminders), fresh)

    """Groups and their members' courses."""

    def group_exists(self, group_id: str) -> bool:
        with self._read() as conn:
            return conn.execute(select(t.groups.c.id).where(t.groups.c.id == group_id)).first() is not None

    def load_group(self, group_id: str) -> Group:
        """The stored group (with its therapists' absences); raises UnknownName."""
        with self._read() as conn:
            return self._load_group(conn, group_id)

    def _load_group(self, conn: Connection, group_id: str) -> Group:
        row = conn.execute(select(t.groups).where(t.groups.c.id == group_id)).mappings().first()
        if row is None:
            raise UnknownName(f"unknown group {shown(group_id)}")
        group = _group_of(row)
        absences = self._absences(conn, {group.therapist}, since=group.start)
        return group.model_copy(update={"absences": absences}) if absences else group

    def groups(self) -> list[dict[str, Any]]:
        """Summaries ``{id, protocol, therapist, cotherapist, state, start, min, max, members}`` by id."""
        g, c = t.groups.c, t.courses.c
        members = (
            select(c.group_id, func.count().label("n"))
            .where(c.group_id.is_not(None), c.state != CourseState.withdrawn.value)
            .group_by(c.group_id)
            .subquery()
        )
        query = (
            select(g.id, g.protocol, g.protocol_version, g.therapist, g.cotherapist, g.state, g.start_date,
                   g.min_size, g.max_size, func.coalesce(members.c.n, 0))
            .outerjoin(members, members.c.group_id == g.id)
            .order_by(g.id)
        )  # fmt: skip
        with self._read() as conn:
            return [
                {"id": r[0], "protocol": r[1], "protocol_version": r[2], "therapist": r[3], "cotherapist": r[4],
                 "state": r[5], "start": r[6].isoformat(), "min": r[7], "max": r[8], "members": r[9]}
                for r in conn.execute(query)
            ]  # fmt: skip

    def member_states(self, group_id: str) -> dict[str, CourseState]:
        """The state of each member course of a group."""
        c = t.courses.c
        with self._read() as conn:
            rows = conn.execute(select(c.id, c.state).where(c.group_id == group_id))
            return {i: CourseState(s) for i, s in rows}

    def members(self, group_id: str) -> list[Course]:
        """The member courses of a group, by id."""
        with self._read() as conn:
            ids = conn.execute(
                select(t.courses.c.id).where(t.courses.c.group_id == group_id).order_by(t.courses.c.id)
            ).scalars()
            return list(self._load_many(conn, list(ids)).values())

    def add_group(self, group: Group, sessions: Sequence[Session], individual_first: int, now: datetime,
                  booking: BookingCheck | None) -> Group:  # fmt: skip
        """Store a new group; raises CourseExists when the id is taken (by a group or a
        course) and ScheduleClash when ``booking`` refuses a clash."""
        with self._write(adding=True) as conn:
            if conn.execute(select(t.courses.c.id).where(t.courses.c.id == group.id)).first() is not None:
                raise CourseExists(f"group_id: {shown(group.id)} is already a course")
            if conn.execute(select(t.groups.c.id).where(t.groups.c.id == group.id)).first() is not None:
                raise CourseExists(f"group_id: group {shown(group.id)} already exists")
            if booking is not None:
                self._check_bookings(conn, booking, group.id)
            values = _group_values(group, sessions, individual_first)
            conn.execute(insert(t.groups).values(**values, created_at=group.created_at, updated_at=now, version=1))
        return group.model_copy(update={"version": 1})

    def add_member(
        self, group: Group, course: Course, plan: Plan, now: datetime, booking: BookingCheck | None
    ) -> Course:
        """Store a new member course of ``group``, checking in the same transaction that the
        group is still active, at its version, and not full. Raises Refused, ConflictError,
        CourseExists or ScheduleClash; then nothing is written."""
        stored: list[tuple[Course, Plan]] = [(course, plan)]

        def check(conn: Connection) -> None:
            self._check_room(conn, group)
            if booking is not None:
                found = self._check_bookings(conn, booking, course.id)
                if found:
                    stored[0] = with_alerts(course, plan, [conflict_alert(course, a, b, booking.at) for a, b in found])

        try:
            self.write_batches((build_rows(stored, now, self.dialect == "sqlite") for _ in (1,)), before=check)
        except CourseExists:
            raise CourseExists(f"course_id: course {shown(course.id)} already exists") from None
        return stored[0][0].model_copy(update={"version": 1})

    def _check_room(self, conn: Connection, group: Group) -> None:
        g = t.groups.c
        row = conn.execute(select(g.state, g.version, g.max_size).where(g.id == group.id)).first()
        if row is None:
            raise UnknownName(f"unknown group {shown(group.id)}")
        state, version, most = row
        if state != GroupState.active.value:
            raise Refused("add", state, f"group {group.id} is {state}: it takes no new members")
        if version != group.version:
            raise ConflictError(group.id, group.version, version)
        c = t.courses.c
        n = conn.execute(
            select(func.count()).where(c.group_id == group.id, c.state != CourseState.withdrawn.value)
        ).scalar_one()
        if n >= most:
            raise Refused("add", state, f"group {group.id} is full ({n} of {most} members)")

    def save_group(
        self,
        before: Group,
        after: Group,
        sessions: Sequence[Session],
        individual_first: int,
        members: Sequence[MemberChange],
        now: datetime,
        booking: BookingCheck | None = None,
    ) -> tuple[Group, list[Course]]:
        """Write a group event and every member change it makes in one transaction (all or
        nothing). Raises ConflictError when the group or a member changed since it was read,
        ScheduleClash when ``booking`` refuses a clash."""
        pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
        out: list[Course] = []
        with self._write() as conn:
            if booking is not None:
                self._group_clashes(conn, after.id, booking)
            self._update_group(conn, before, after, sessions, individual_first, now)
            for i, m in enumerate(members):
                if pause and i == len(members) // 2:
                    print("test pause: inside the group event's transaction", file=sys.stderr, flush=True)
                    _time.sleep(pause)
                out.append(self._save(conn, m.before, m.after, m.plan, m.effects, now))
            self._notify(conn)
        return after.model_copy(update={"version": before.version + 1}), out

    def load_groups(self, group_ids: Sequence[str]) -> dict[str, Group]:
        """The stored groups of ``group_ids`` that exist (with their therapists' absences), by id."""
        out: dict[str, Group] = {}
        with self._read() as conn:
            for chunk in chunks(list(group_ids), 500):
                for row in conn.execute(select(t.groups).where(t.groups.c.id.in_(chunk))).mappings():
                    out[row["id"]] = _group_of(row)
            if not out:
                return out
            away = self._absences(conn, {g.therapist for g in out.values()}, since=min(g.start for g in out.values()))
        for gid, g in out.items():
            mine = [a for a in away if a.therapist == g.therapist and a.until >= g.start]
            if mine:
                out[gid] = g.model_copy(update={"absences": mine})
        return out

    def member_counts(self, group_ids: Sequence[str]) -> dict[str, int]:
        """How many members (not withdrawn) each of ``group_ids`` has."""
        c = t.courses.c
        out = dict.fromkeys(group_ids, 0)
        with self._read() as conn:
            for chunk in chunks(list(group_ids), 500):
                query = (
                    select(c.group_id, func.count())
                    .where(c.group_id.in_(chunk), c.state != CourseState.withdrawn.value)
                    .group_by(c.group_id)
                )
                out.update({g: n for g, n in conn.execute(query)})
        return out

    @staticmethod
    def check_joins(conn: Connection, joins: dict[str, tuple[int, int]]) -> None:
        """In an import's transaction: each group of ``joins`` (id: (version read, members
        then)) still active, at that version, with as many members (the import checked the
        room against them). Raises Refused or ConflictError."""
        g, c = t.groups.c, t.courses.c
        for chunk in chunks(sorted(joins), 500):
            rows = {
                r[0]: r[1:] for r in conn.execute(select(g.id, g.state, g.version, g.max_size).where(g.id.in_(chunk)))
            }
            counts: dict[str, int] = dict(
                conn.execute(
                    select(c.group_id, func.count())
                    .where(c.group_id.in_(chunk), c.state != CourseState.withdrawn.value)
                    .group_by(c.group_id)
                ).all()
            )
            for gid in chunk:
                version, members = joins[gid]
                if gid not in rows:
                    raise UnknownName(f"unknown group {shown(gid)}")
                state, found, _ = rows[gid]
                if state != GroupState.active.value:
                    raise Refused("add", state, f"group {gid} is {state}: it takes no new members")
                if found != version or counts.get(gid, 0) != members:
                    changed = ConflictError(gid, version, found)
                    changed.args = (
                        f"group '{gid}' changed while the file was read (another writer added a member or moved "
                        "its sessions); nothing was written: import it again",
                    )
                    raise changed

    def active_group_ids(self, therapist: str) -> list[str]:
        """The active groups ``therapist`` leads, by id."""
        g = t.groups.c
        with self._read() as conn:
            query = select(g.id).where(g.therapist == therapist, g.state == GroupState.active.value).order_by(g.id)
            return list(conn.execute(query).scalars())

    def _update_group(self, conn: Connection, before: Group, after: Group, sessions: Sequence[Session],
                      individual_first: int, now: datetime) -> None:  # fmt: skip
        """Write the group's row; ConflictError when it changed since ``before`` was read."""
        result = conn.execute(
            update(t.groups)
            .where(t.groups.c.id == after.id, t.groups.c.version == before.version)
            .values(**_group_values(after, sessions, individual_first), updated_at=now, version=before.version + 1)
        )
        if result.rowcount != 1:
            found = conn.execute(select(t.groups.c.version).where(t.groups.c.id == after.id)).scalar()
            raise ConflictError(after.id, before.version, found)


def _group_values(group: Group, sessions: Sequence[Session], individual_first: int) -> dict[str, Any]:
    return {
        "id": group.id,
        "protocol": group.protocol,
        "protocol_version": group.protocol_version,
        "therapist": group.therapist,
        "cotherapist": group.cotherapist,
        "timezone": group.timezone,
        "start_date": group.start,
        "slot": group.slot.strftime("%H:%M"),
        "min_size": group.min,
        "max_size": group.max,
        "state": group.state.value,
        "sessions": [s.model_dump(mode="json") for s in group.sessions],
        "history": [h.model_dump(mode="json", by_alias=True) for h in group.history],
        "plan": group_plan_lists(individual_first, sessions),
    }


def _group_of(row: Any) -> Group:
    """A group from its ``ipt_groups`` row (no absences)."""
    return Group(
        id=row["id"],
        protocol=row["protocol"],
        protocol_version=row["protocol_version"],
        therapist=row["therapist"],
        cotherapist=row["cotherapist"],
        timezone=row["timezone"],
        start=row["start_date"],
        slot=time.fromisoformat(row["slot"]),
        min=row["min_size"],
        max=row["max_size"],
        state=GroupState(row["state"]),
        sessions=[Session.model_validate(s) for s in row["sessions"]],
        history=[HistoryEntry.model_validate(h) for h in row["history"]],
        created_at=row["created_at"],
        version=row["version"],
    )
