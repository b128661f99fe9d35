"""The dispatch queue: reminders and digests claimed under a lease, recorded when
delivered, skipped or failed, or left for a later try; fenced by the claim count
(``attempts``) so a run that lost its lease records nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, Text, and_, bindparam, func, insert, or_, select, tuple_, update

from ..core.model import ACTIVE_STATES
from . import schema as t
from .base import StoreBase, chunks


class Outbox(StoreBase):
    """Claims, leases and outcomes of reminders and digests."""

    def next_due(self) -> datetime | None:
        """When the next pending reminder or digest can be claimed, or None: the earliest due
        instant of one not leased, or the earliest lease to run out (a claim in flight, or a
        delivery waiting to be tried again). Only pending rows carry a lease, so the second is
        read off the small partial lease index."""
        candidates: list[datetime] = []
        with self._read() as conn:
            for table in (t.reminders, t.digests):
                c = table.c
                free = select(c.due).where(c.status == "pending", c.lease_until.is_(None)).order_by(c.due).limit(1)
                leased = select(func.min(c.lease_until)).where(c.lease_until.is_not(None))
                candidates += [v for v in (conn.execute(free).scalar(), conn.execute(leased).scalar()) if v]
        return min(candidates, default=None)

    def due_pending(self, now: datetime) -> int:
        """How many reminders and digests are pending with their due instant passed (claimed or not)."""
        with self._read() as conn:
            return sum(
                int(conn.execute(select(func.count()).where(table.c.status == "pending", table.c.due <= now)).scalar()
                    or 0)
                for table in (t.reminders, t.digests)
            )  # fmt: skip

    def site(self) -> str:
        """This database's site id when clinic.yaml names none: ``site_`` and 12 random hex
        digits, made by the first caller and kept in ``ipt_meta`` (every later call, in any
        process, reads the same)."""
        import secrets

        from ..core.errors import StoreError

        query = select(t.meta.c.value).where(t.meta.c.key == "site")
        with self._read() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            try:
                with self._write() as conn:
                    if conn.execute(query).scalar() is None:
                        conn.execute(insert(t.meta).values(key="site", value=f"site_{secrets.token_hex(6)}"))
            except StoreError:  # another process made it first
                pass
            with self._read() as conn:
                found = conn.execute(query).scalar()
        return str(found)

    def claim_due(
        self, now: datetime, limit: int, lease: timedelta, held_from: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Claim up to ``limit`` pending reminders due by ``now`` whose lease is free or has run
        out (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; one write transaction on SQLite): they
        are leased until ``(held_from or now) + lease``, in one set-based UPDATE that also
        counts the claim in ``attempts``, so ``(course_id, id, attempts)`` is this claim's
        token (see ``held``). Each comes with ``session_start`` (local ISO) when it is a
        client's session reminder (the late policy needs it); in due order."""
        with self._write() as conn:
            rows = self._claim(conn, t.reminders, now, limit, (held_from or now) + lease, _REMINDER_COLUMNS)
            return self._with_session_starts(conn, rows)

    def due_reminders(self, now: datetime) -> list[dict[str, Any]]:
        """What ``claim_due`` would claim at ``now`` (all of it), read only: nothing is leased
        or counted (``ipt daemon --dry-run``)."""
        with self._read() as conn:
            rows = [dict(row) for row in conn.execute(_claimable(t.reminders, now, None, _REMINDER_COLUMNS)).mappings()]
            return self._with_session_starts(conn, rows)

    @staticmethod
    def _with_session_starts(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add to each row ``session_start`` (local ISO, the late policy needs it) and what its
        event carries about the course and session: ``course_info`` (``{therapist, protocol,
        protocol_version, timezone}``) and ``session_info`` (the session's plan list, see PLAN_FIELDS)."""
        courses = sorted({row["course_id"] for row in rows if row["course_id"]})
        plans: dict[tuple[str, int], list[Any]] = {}
        infos: dict[str, dict[str, Any]] = {}
        c = t.courses.c
        for chunk in chunks(courses, 500):
            query = select(c.id, c.therapist, c.protocol, c.protocol_version, c.timezone, c.plan).where(c.id.in_(chunk))
            for cid, therapist, protocol, version, zone, plan in conn.execute(query):
                infos[cid] = {"therapist": therapist, "protocol": protocol, "protocol_version": version,
                              "timezone": zone}  # fmt: skip
                for session in plan or []:
                    plans[(cid, session[0])] = session
        for row in rows:
            session = plans.get((row["course_id"], row["session"])) if row["session"] else None
            row["session_info"] = session
            row["course_info"] = infos.get(row["course_id"])
            row["session_start"] = session[2] if session and row["audience"] == "client" else None
        return rows

    @staticmethod
    def _claim(
        conn: Connection, table: Any, now: datetime, limit: int, until: datetime, columns: Sequence[Any]
    ) -> list[dict[str, Any]]:
        """Lease up to ``limit`` pending rows of ``table`` (reminders or digests) due by ``now``
        whose lease is free or has run out, until ``until``, in one ``UPDATE … RETURNING``;
        in due order."""
        claimed = (
            update(table)
            .where(_in_keys(table, _claimable(table, now, limit).with_for_update(skip_locked=True)))
            .values(lease_until=until, attempts=table.c.attempts + 1)
            .returning(*columns)
        )
        rows = [dict(row) for row in conn.execute(claimed).mappings()]
        rows.sort(key=lambda row: (row["due"], row["id"]))
        return rows

    def lost(self, table: str, claims: Sequence[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
        """Which ``claims`` (``(course_id, id, attempts)`` of ``"reminders"``, ``(id, attempts)``
        of ``"digests"``, as claimed) this run no longer holds: no longer pending (cancelled
        meanwhile, or recorded) or claimed again since (``attempts`` changed). A read: a
        cancellation committed before it is seen."""
        if not claims:
            return set()
        with self._read() as conn:
            return self._lost(conn, _LEASED[table], claims)

    def _lost(self, conn: Connection, leased: Any, claims: Sequence[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
        gone: set[tuple[Any, ...]] = set()
        for chunk in chunks(claims, 1000):
            rows = self._claim_rows(chunk)
            on = and_(*(column == rows.c[f"k{i}"] for i, column in enumerate(_key_columns(leased))))
            changed = or_(
                leased.c.status.is_distinct_from("pending"),
                leased.c.attempts.is_distinct_from(rows.c[f"k{len(chunk[0]) - 1}"]),
            )
            query = select(*rows.c).select_from(rows.outerjoin(leased, on)).where(changed)
            gone.update(tuple(row) for row in conn.execute(query))
        return gone

    def renew(self, table: str, claims: Sequence[tuple[Any, ...]], until: datetime) -> set[tuple[Any, ...]]:
        """Extend to ``until`` the leases of the ``claims`` still held (see ``lost``); returns those."""
        if not claims:
            return set()
        with self._write() as conn:
            return self._fenced(conn, _LEASED[table], claims, {"lease_until": until})

    def statuses(self, table: str, keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], str]:
        """The status of each row of ``table`` by key (``(course_id, id)`` or ``(id,)``)."""
        leased = _LEASED[table]
        out: dict[tuple[Any, ...], str] = {}
        with self._read() as conn:
            for chunk in chunks(keys, 1000):
                wanted = [*chunk] if leased is t.reminders else [k[0] for k in chunk]
                query = select(*_key_columns(leased), leased.c.status).where(_in_keys(leased, wanted))
                out.update({tuple(row[:-1]): row[-1] for row in conn.execute(query)})
        return out

    def _fenced(
        self, conn: Connection, leased: Any, claims: Sequence[tuple[Any, ...]], values: dict[str, Any]
    ) -> set[tuple[Any, ...]]:
        """Set ``values`` on the ``claims`` still held (pending, ``attempts`` unchanged); returns
        those. A claim another run took over since, or one cancelled meanwhile, is left alone."""
        done: set[tuple[Any, ...]] = set()
        pending = leased.c.status == "pending"
        if self.dialect == "sqlite":  # a hint (true for most rows) so the primary key is used, not the status index
            pending = func.likely(pending)
        for chunk in chunks(claims, 1000):
            statement = update(leased).where(self._in_claims(leased, chunk), pending).values(**values)
            if self.dialect == "postgresql":
                done.update(tuple(row) for row in conn.execute(statement.returning(*_claim_columns(leased))))
                continue
            # SQLite: this transaction holds the write lock, so what is not lost now is what the
            # UPDATE takes (cheaper than RETURNING, which SQLite materializes).
            gone = self._lost(conn, leased, chunk)
            conn.execute(statement)
            done.update(claim for claim in chunk if claim not in gone)
        return done

    def _claim_rows(self, claims: Sequence[tuple[Any, ...]]) -> Any:
        """``claims`` as a table ``(k0, k1[, k2])`` from one parameter (a JSON array read by
        ``json_each`` on SQLite, arrays joined by ``unnest`` on PostgreSQL): rows are then
        found by primary key, where an IN list of 1,000 row values makes SQLite scan the table,
        and the statement compiles once whatever the number of claims."""
        width = len(claims[0])
        names = [f"k{i}" for i in range(width)]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            arrays = [
                bindparam(None, [c[i] for c in claims], type_=ARRAY(Integer if i == width - 1 else Text))
                for i in range(width)
            ]
            return func.unnest(*arrays).table_valued(*names).render_derived()
        each = func.json_each(bindparam(None, json.dumps([list(c) for c in claims]))).table_valued("value")
        return select(*(func.json_extract(each.c.value, f"$[{i}]").label(n) for i, n in enumerate(names))).subquery()

    def _in_claims(self, table: Any, claims: Sequence[tuple[Any, ...]]) -> Any:
        """``(key, attempts) IN claims`` (see ``_claim_rows``)."""
        return tuple_(*_claim_columns(table)).in_(select(*self._claim_rows(claims).c))

    def retry_later(self, items: Sequence[tuple[tuple[str, str, int], datetime, str]]) -> set[tuple[Any, ...]]:
        """Leave claimed reminders ``((course, id, attempts), until, error)`` pending, each not to
        be claimed again before its ``until``; only those still held. Returns those."""
        return self._retry(t.reminders, items)

    def _retry(self, leased: Any, items: Sequence[tuple[Any, datetime, str]]) -> set[tuple[Any, ...]]:
        if not items:
            return set()
        groups: dict[tuple[datetime, str], list[Any]] = {}
        for claim, until, error in items:
            groups.setdefault((until, error[:500]), []).append(claim)
        done: set[tuple[Any, ...]] = set()
        with self._write() as conn:
            for (until, error), claims in groups.items():  # one UPDATE per backoff step and error
                done |= self._fenced(conn, leased, claims, {"lease_until": until, "last_error": error})
        return done

    def finish(
        self,
        now: datetime,
        delivered: Sequence[tuple[str, str, int]],
        skipped: Sequence[tuple[str, str, int]],
        failed: Sequence[tuple[str, str, int]] = (),
    ) -> set[tuple[Any, ...]]:
        """Record claimed reminders ``(course, id, attempts)`` as delivered, skipped or failed;
        their leases end. Only those still held: one cancelled meanwhile stays cancelled, one
        another run claimed since is that run's to record. Returns those recorded."""
        recorded: set[tuple[Any, ...]] = set()
        with self._write() as conn:
            for status, claims in (("delivered", delivered), ("skipped", skipped), ("failed", failed)):
                values = {"status": status, "delivered_at": now, "lease_until": None}
                recorded |= self._fenced(conn, t.reminders, claims, values)
        return recorded

    # ------------------------------------------------------------ digests

    def active_therapists(self) -> list[str]:
        """Therapists with at least one course in an active state, sorted."""
        c = t.courses.c
        with self._read() as conn:
            if self.dialect == "sqlite":  # read off the covering index, not 100,000 course rows
                states = ", ".join(f"'{state.value}'" for state in sorted(ACTIVE_STATES))
                sql = (
                    "SELECT DISTINCT therapist FROM ipt_courses INDEXED BY ix_ipt_courses_therapist_state"
                    f" WHERE state IN ({states}) ORDER BY therapist"
                )
                return list(conn.exec_driver_sql(sql).scalars())
            query = select(c.therapist).where(c.state.in_(sorted(ACTIVE_STATES))).distinct().order_by(c.therapist)
            return list(conn.execute(query).scalars())

    def add_digests(self, rows: Sequence[dict[str, Any]]) -> int:
        """Record digests to send (``{id, therapist, fire_local, timezone, due, site}``); an id already
        recorded is left as it is. Returns how many were new."""
        if not rows:
            return 0
        values = [{**row, "status": "pending", "attempts": 0} for row in rows]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement: Any = pg_insert(t.digests).on_conflict_do_nothing(index_elements=["id"])
        else:
            statement = insert(t.digests).prefix_with("OR IGNORE")
        with self._write() as conn:
            return len(conn.execute(statement.returning(t.digests.c.id), values).all())

    def claim_digests(
        self, now: datetime, limit: int, lease: timedelta, held_from: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Claim pending digests due by ``now`` as ``claim_due`` claims reminders; a claim's
        token is ``(id, attempts)``."""
        with self._write() as conn:
            return self._claim(conn, t.digests, now, limit, (held_from or now) + lease, _DIGEST_COLUMNS)

    def due_digests(self, now: datetime) -> list[dict[str, Any]]:
        """What ``claim_digests`` would claim at ``now``, read only."""
        with self._read() as conn:
            return [dict(row) for row in conn.execute(_claimable(t.digests, now, None, _DIGEST_COLUMNS)).mappings()]

    def digest_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are recorded digests (of any status)."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in chunks(list(ids), 500):
                found.update(conn.execute(select(t.digests.c.id).where(t.digests.c.id.in_(chunk))).scalars())
        return found

    def digest_sources(
        self, therapist: str, since: datetime, until: datetime
    ) -> tuple[list[tuple[str, list[Any]]], list[dict[str, Any]]]:
        """For a therapist's active courses: each course's id and plan (session lists), and
        their therapist alerts due in ``[since, until]`` or ``failed`` (``{id, course, kind,
        due, status}``, in due order)."""
        c, r = t.courses.c, t.reminders.c
        with self._read() as conn:
            active = select(c.id).where(c.therapist == therapist, c.state.in_(sorted(ACTIVE_STATES)))
            plans = [
                (cid, [p for p in plan or [] if group is None or p[5] != "group"])  # a group's session: once, below
                for cid, plan, group in conn.execute(select(c.id, c.plan, c.group_id).where(c.id.in_(active)))
            ]
            alerts = conn.execute(
                select(r.id, r.course_id.label("course"), r.kind, r.due, r.status)
                .where(
                    r.course_id.in_(active),
                    r.audience == "therapist",
                    or_(r.due.between(since, until), r.status == "failed"),
                )
                .order_by(r.due, r.id)
            ).mappings()
            return sorted(plans), [dict(a) for a in alerts]

    def digest_groups(self, therapist: str) -> list[tuple[str, list[Any]]]:
        """Each active group ``therapist`` leads or co-leads: its id and its stored sessions
        (``[number, start, status, ...]`` lists, as ``ipt_groups.plan`` keeps them)."""
        g = t.groups.c
        with self._read() as conn:
            rows = conn.execute(
                select(g.id, g.plan).where(
                    or_(g.therapist == therapist, g.cotherapist == therapist), g.state == "active"
                )
            )
            return sorted((gid, list((plan or {}).get("sessions", []))) for gid, plan in rows)

    def finish_digests(
        self, now: datetime, delivered: Sequence[tuple[str, int]], failed: Sequence[tuple[str, int]] = ()
    ) -> set[tuple[Any, ...]]:
        """Record claimed digests ``(id, attempts)`` still held as delivered or failed; returns those."""
        recorded: set[tuple[Any, ...]] = set()
        with self._write() as conn:
            for status, claims in (("delivered", delivered), ("failed", failed)):
                values = {"status": status, "delivered_at": now, "lease_until": None}
                recorded |= self._fenced(conn, t.digests, claims, values)
        return recorded

    def retry_digests_later(self, items: Sequence[tuple[tuple[str, int], datetime, str]]) -> set[tuple[Any, ...]]:
        """Leave claimed digests ``((id, attempts), until, error)`` still held pending until then."""
        return self._retry(t.digests, items)


_LEASED = {"reminders": t.reminders, "digests": t.digests}
_REMINDER_COLUMNS = tuple(
    t.reminders.c[name]
    for name in ("course_id", "id", "kind", "audience", "due", "session", "rule", "attempts", "detail")
)
_DIGEST_COLUMNS = tuple(
    t.digests.c[name] for name in ("id", "therapist", "fire_local", "timezone", "due", "attempts", "site")
)


def _claimable(table: Any, now: datetime, limit: int | None, columns: Sequence[Any] = ()) -> Any:
    """The pending rows of ``table`` due by ``now`` whose lease is free or has run out, in due
    order (at most ``limit``): their ``columns``, by default their keys."""
    c = table.c
    query = (
        select(*(columns or _key_columns(table)))
        .where(c.status == "pending", c.due <= now, or_(c.lease_until.is_(None), c.lease_until < now))
        .order_by(c.due, c.id)
    )
    return query.limit(limit) if limit is not None else query


def _claim_columns(table: Any) -> tuple[Any, ...]:
    """A claim's token: the key and the claim count (``attempts``), which every claim raises."""
    return (*_key_columns(table), table.c.attempts)


def _key_columns(table: Any) -> tuple[Any, ...]:
    """The primary key of a leased table: (course_id, id) for reminders, id for digests."""
    return (table.c.course_id, table.c.id) if table is t.reminders else (table.c.id,)


def _in_keys(table: Any, keys: Any) -> Any:
    """``key IN keys`` for a leased table; ``keys`` is a list of keys or a subquery."""
    columns = _key_columns(table)
    return tuple_(*columns).in_(keys) if len(columns) > 1 else columns[0].in_(keys)
