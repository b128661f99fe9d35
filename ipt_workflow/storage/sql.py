"""The SQL store: courses and their reminders in SQLite (default) or PostgreSQL.

One event is one transaction: the course row is updated only if its ``version`` is the one
that was read (optimistic concurrency), and the history, sessions, measurements and
reminders change with it or not at all. On SQLite write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..core.errors import ConflictError, CourseExists, UnknownName, shown
from ..core.model import (
    ACTIVE_STATES,
    Course,
    CourseState,
    Effects,
    HistoryEntry,
    Measurement,
    Pause,
    Plan,
    Reminder,
    Session,
    SessionStatus,
)
from . import HEAD_REVISION
from . import schema as t
from .engine import database_error, engine_for, ensure_schema, upgrade
from .reads import reminder_documents
from .schema import to_text

_T = TypeVar("_T")

#: The PostgreSQL channel a course change notifies and ``ipt daemon`` listens on.
NOTIFY_CHANNEL = "ipt_reminders"


class SqlStore:
    """Courses, history, sessions, measurements and reminders in one SQL database."""

    def __init__(self, engine: Engine, *, owns_engine: bool = True) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        self.dialect = engine.dialect.name
        self._ready = False
        # The driver's own errors too: the bulk path writes through the raw connection (COPY).
        dbapi = engine.dialect.loaded_dbapi
        self._integrity_errors: tuple[type[Exception], ...] = (IntegrityError, dbapi.IntegrityError)
        self._database_errors: tuple[type[Exception], ...] = (DBAPIError, dbapi.Error)

    # ------------------------------------------------------------ lifecycle

    def ensure_schema(self) -> None:
        """Create or upgrade the schema if needed (see ``engine.ensure_schema``)."""
        if not self._ready:
            ensure_schema(self.engine)
            self._ready = True

    def close(self) -> None:
        if self.owns_engine:
            self.engine.dispose()

    def reopen(self) -> None:
        """Close the pooled connections, so the next ones open the database at its path afresh
        (a file moved into place), and check its schema again on next use."""
        self.engine.dispose()
        self._ready = False

    @contextmanager
    def _write(self, adding: bool = False) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite). A failure of the database is
        a one-line StoreError (``DatabaseBusy`` past the lock wait); when ``adding`` courses, a
        key another writer took first is ``CourseExists``. Either way it is rolled back."""
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                conn.info["immediate"] = True
                with conn.begin():
                    yield conn
        except self._integrity_errors as exc:
            if adding:
                raise CourseExists("a course id is already taken") from None
            raise database_error(exc, self.engine) from None
        except self._database_errors as exc:
            raise database_error(exc, self.engine) from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self.ensure_schema()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except self._database_errors as exc:
            raise database_error(exc, self.engine) from None

    # ------------------------------------------------------------ reads

    def load(self, course_id: str) -> Course:
        """The stored course; raises UnknownName when there is none."""
        with self._read() as conn:
            return self._load(conn, course_id)

    def _load(self, conn: Connection, course_id: str) -> Course:
        row = conn.execute(select(t.courses).where(t.courses.c.id == course_id)).mappings().first()
        if row is None:
            raise UnknownName(f"unknown course {shown(course_id)}")
        hist = conn.execute(
            select(t.history).where(t.history.c.course_id == course_id).order_by(t.history.c.seq)
        ).mappings()
        recorded = conn.execute(
            select(t.sessions)
            .where(t.sessions.c.course_id == course_id, t.sessions.c.status != SessionStatus.planned.value)
            .order_by(t.sessions.c.number)
        ).mappings()
        measures = conn.execute(
            select(t.measurements).where(t.measurements.c.course_id == course_id).order_by(t.measurements.c.seq)
        ).mappings()
        alerts = conn.execute(
            select(t.reminders)
            .where(t.reminders.c.course_id == course_id, t.reminders.c.rule.is_not(None))
            .order_by(t.reminders.c.due, t.reminders.c.id)
        ).mappings()
        return Course(
            id=row["id"],
            client=row["client"],
            therapist=row["therapist"],
            protocol=row["protocol"],
            protocol_version=row["protocol_version"],
            timezone=row["timezone"],
            start=row["start_date"],
            slot=time.fromisoformat(row["slot"]),
            state=CourseState(row["state"]),
            focus=row["focus"],
            current_focus=row["current_focus"],
            foci_worked=row["foci_worked"],
            planned_sessions=row["planned_sessions"],
            sessions=[_session(r) for r in recorded],
            measurements=[
                Measurement(
                    instrument=m["instrument"], score=m["score"], item9=m["item9"], at=m["at"], session=m["session"]
                )
                for m in measures
            ],
            pauses=[Pause.model_validate(p) for p in row["pauses"]],
            alerts=[_reminder(r) for r in alerts],
            fired_rules=row["fired_rules"],
            completed_at=row["completed_at"],
            created_at=row["created_at"],
            history=[
                HistoryEntry.model_validate(
                    {
                        "event": h["event"],
                        "at": h["at"],
                        "from": h["from_state"],
                        "to": h["to_state"],
                        "rule": h["rule"],
                        "data": h["data"],
                    }
                )
                for h in hist
            ],
            version=row["version"],
        )

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored courses."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in _chunks(list(ids), 500):
                found.update(conn.execute(select(t.courses.c.id).where(t.courses.c.id.in_(chunk))).scalars())
        return found

    def courses(self, state: str | None = None, therapist: str | None = None) -> list[dict[str, Any]]:
        """Summaries ``{id, client, therapist, protocol, state, version, created_at}`` by id."""
        c = t.courses.c
        query = select(c.id, c.client, c.therapist, c.protocol, c.state, c.version, c.created_at).order_by(c.id)
        if state:
            query = query.where(c.state == state)
        if therapist:
            query = query.where(c.therapist == therapist)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def reminders(
        self,
        course: str | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Reminder]:
        """Reminders in due order, filtered by course, ``start <= due < until`` and status
        (the query of ``reads.reminder_documents``, as models)."""
        self.ensure_schema()
        documents = reminder_documents(self.engine, course, start, until, status, limit)
        return [Reminder.model_validate(d) for d in documents]

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
        courses = sorted({row["course_id"] for row in rows if row["audience"] == "client" and row["session"]})
        starts: dict[tuple[str, int], str] = {}
        for chunk in _chunks(courses, 500):
            plans = select(t.courses.c.id, t.courses.c.plan).where(t.courses.c.id.in_(chunk))
            for cid, plan in conn.execute(plans):
                for session in plan or []:
                    starts[(cid, session[0])] = session[2]
        for row in rows:
            row["session_start"] = starts.get((row["course_id"], row["session"])) if row["session"] else None
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
        for chunk in _chunks(claims, 1000):
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
            for chunk in _chunks(keys, 1000):
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
        for chunk in _chunks(claims, 1000):
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
        """Record digests to send (``{id, therapist, fire_local, timezone, due}``); an id already
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
            for chunk in _chunks(list(ids), 500):
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
            plans = [(cid, plan or []) for cid, plan in conn.execute(select(c.id, c.plan).where(c.id.in_(active)))]
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

    # ------------------------------------------------------------ writes

    def add(self, course: Course, plan: Plan, now: datetime) -> Course:
        """Store a new course with its plan and reminders; returns it at version 1. Raises
        CourseExists (nothing written) when its id is taken, even by a writer racing this one."""
        try:
            self.add_many([(course, plan)], now)
        except CourseExists:
            raise CourseExists(f"--id: course {shown(course.id)} already exists") from None
        return course.model_copy(update={"version": 1})

    def add_many(self, items: Iterable[tuple[Course, Plan]], now: datetime, batch: int = 2000) -> int:
        """Store many new courses in one transaction (all or nothing); returns how many."""
        sqlite = self.dialect == "sqlite"

        def batches() -> Iterator[Rows]:
            pending: list[tuple[Course, Plan]] = []
            for item in items:
                pending.append(item)
                if len(pending) >= batch:
                    yield build_rows(pending, now, sqlite)
                    pending = []
            if pending:
                yield build_rows(pending, now, sqlite)

        return self.write_batches(batches())

    def write_batches(self, batches: Iterable[Rows]) -> int:
        """Write batches of new-course rows (from ``build_rows``) in one transaction; returns
        how many courses. An exception from ``batches`` rolls every batch back; so does a
        course id another writer took meanwhile (``CourseExists``)."""
        done = 0
        gc.disable()  # hundreds of thousands of short-lived objects: the cyclic collector only slows this
        try:
            with self._bulk_journal(), self._write(adding=True) as conn:
                # Into an empty table, building the due index once at the end (a sort) beats
                # keeping it up to date row by row; it is part of the same transaction.
                rebuild = conn.execute(select(t.reminders.c.id).limit(1)).first() is None
                due_index = next(i for i in t.reminders.indexes if i.name == "ix_ipt_reminders_due")
                if rebuild:
                    due_index.drop(conn)
                for rows in batches:
                    self._insert_rows(conn, t.courses, rows.courses)
                    self._insert_rows(conn, t.history, rows.history)
                    self._insert_rows(conn, t.sessions, rows.sessions)
                    self._insert_rows(conn, t.reminders, rows.reminders, columns=9)
                    done += len(rows.courses)
                if rebuild:
                    due_index.create(conn)
                self._notify(conn)
        finally:
            gc.enable()
        return done

    @contextmanager
    def _bulk_journal(self) -> Iterator[None]:
        """A big SQLite import writes pages once, through a rollback journal, instead of twice
        (WAL, then checkpoint). Only when no one else has the file open; WAL again after."""
        if self.dialect != "sqlite":
            yield
            return
        switched = False
        try:
            with self.engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode=DELETE").scalar()
                switched = mode == "delete"
                # Room to sort the due index in memory when it is built at the end.
                conn.exec_driver_sql("PRAGMA cache_size=-524288")
                conn.exec_driver_sql("PRAGMA temp_store=MEMORY")
        except OperationalError:
            switched = False
        try:
            yield
        finally:
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA cache_size=-65536")
                    conn.exec_driver_sql("PRAGMA temp_store=DEFAULT")
                if switched:
                    with self.engine.connect() as conn:
                        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            except DBAPIError:
                pass  # the import's own outcome is what counts; every new connection asks for WAL

    def save(self, before: Course, after: Course, plan: Plan, effects: Effects, now: datetime) -> Course:
        """Write one applied event atomically; ``before`` is the course as it was read.

        Raises ConflictError (nothing written) when another writer got there first.
        """
        expected = before.version
        with self._write() as conn:
            result = conn.execute(
                update(t.courses)
                .where(t.courses.c.id == after.id, t.courses.c.version == expected)
                .values(
                    **_course_values(after),
                    updated_at=now,
                    version=expected + 1,
                    plan=plan_lists(plan.sessions),
                )
            )
            if result.rowcount != 1:
                found = conn.execute(select(t.courses.c.version).where(t.courses.c.id == after.id)).scalar()
                raise ConflictError(after.id, expected, found)
            seq0 = len(before.history)
            if effects.history:
                entries = [_history_values(after.id, seq0 + i, h) for i, h in enumerate(effects.history)]
                conn.execute(insert(t.history), entries)
            new_measures = after.measurements[len(before.measurements) :]
            if new_measures:
                base = len(before.measurements)
                conn.execute(
                    insert(t.measurements),
                    [_measure_values(after.id, base + i, m) for i, m in enumerate(new_measures)],
                )
            conn.execute(delete(t.sessions).where(t.sessions.c.course_id == after.id))
            recorded = [_session_values(after.id, s) for s in plan.sessions if s.status is not SessionStatus.planned]
            if recorded:
                conn.execute(insert(t.sessions), recorded)
            if effects.cancelled:
                for chunk in _chunks(effects.cancelled, 500):
                    conn.execute(
                        update(t.reminders)
                        .where(
                            t.reminders.c.course_id == after.id,
                            t.reminders.c.id.in_(chunk),
                            t.reminders.c.status == "pending",
                        )
                        .values(status="cancelled", lease_until=None)
                    )
            if effects.added:
                ids = [r.id for r in effects.added]
                known = set(
                    conn.execute(
                        select(t.reminders.c.id).where(t.reminders.c.course_id == after.id, t.reminders.c.id.in_(ids))
                    ).scalars()
                )
                fresh = [r for r in effects.added if r.id not in known]
                if fresh:
                    conn.execute(insert(t.reminders), [_reminder_values(r) for r in fresh])
                for r in effects.added:
                    if r.id in known:  # planned again after a cancellation: pending once more
                        conn.execute(
                            update(t.reminders)
                            .where(
                                t.reminders.c.course_id == after.id,
                                t.reminders.c.id == r.id,
                                t.reminders.c.status == "cancelled",
                            )
                            .values(status="pending", due=r.due, last_error=None)
                        )
            self._notify(conn)
        return after.model_copy(update={"version": expected + 1})

    def _notify(self, conn: Connection) -> None:
        """On PostgreSQL, tell listening daemons (``NOTIFY ipt_reminders``, no payload) that
        reminders changed; sent when this transaction commits."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")

    def _insert_rows(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]], columns: int = 0) -> None:
        if not rows:
            return
        names = [c.name for c in table.columns][: columns or None]
        if self.dialect == "postgresql":
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in names)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", rows)


@dataclass
class Rows:
    """Plain rows of new courses, ready for executemany (SQLite) or COPY (PostgreSQL);
    plain tuples, so worker processes can build them and send them over cheaply."""

    courses: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    reminders: list[tuple[Any, ...]] = field(default_factory=list)


NewReminder = tuple[str, str, str, datetime, "int | None", "str | None"]  # id, kind, audience, due, session, rule


def build_rows(items: Iterable[tuple[Course, Plan]], now: datetime, sqlite: bool) -> Rows:
    """The rows that store new courses (at version 1) with their plans and reminders."""
    return build_new_rows(
        (
            (course, plan.sessions, [(r.id, r.kind, r.audience, r.due, r.session, r.rule) for r in plan.reminders])
            for course, plan in items
        ),
        now,
        sqlite,
    )


def build_new_rows(
    items: Iterable[tuple[Course, Sequence[Session], Sequence[NewReminder]]], now: datetime, sqlite: bool
) -> Rows:
    """Rows for new courses given their sessions (planned ones are not stored) and their
    reminders as plain tuples: the bulk import's path, with no model built per reminder."""

    def when(d: datetime | None) -> Any:
        return d if not sqlite or d is None else to_text(d)

    js = json.dumps
    out = Rows()
    for course, course_sessions, course_reminders in items:
        v = _course_values(course)
        out.courses.append(
            (course.id, v["client"], v["therapist"], v["protocol"], v["protocol_version"], v["timezone"],
             course.start.isoformat() if sqlite else course.start, v["slot"], v["state"], v["planned_sessions"],
             _json_list(v["focus"]), v["current_focus"], _json_list(v["foci_worked"]),
             js(v["pauses"]) if v["pauses"] else "[]", _json_list(v["fired_rules"]),
             when(v["completed_at"]), when(v["created_at"]), when(now), 1, v["schema_version"],
             js(plan_lists(course_sessions)))
        )  # fmt: skip
        for i, h in enumerate(course.history):
            out.history.append(
                (course.id, i, h.event, when(h.at), h.from_.value if h.from_ else None, h.to.value, h.rule,
                 js(h.data) if h.data else "{}")
            )  # fmt: skip
        for s in course_sessions:
            if s.status is SessionStatus.planned:
                continue
            out.sessions.append(
                (course.id, s.number, s.phase, when(s.start), s.start.isoformat(), s.status.value, s.step,
                 s.duration_minutes, s.format, _json_list(s.participants), _json_list(s.optional_participants))
            )  # fmt: skip
        cid = course.id
        for rid, kind, audience, due, session, rule in course_reminders:
            out.reminders.append((cid, rid, kind, audience, when(due), session, "pending", rule, 0))
    return out


def plan_lists(sessions: Sequence[Session]) -> list[list[Any]]:
    """Sessions as stored in ``ipt_courses.plan``: one list a session, in PLAN_FIELDS order."""
    return [
        [s.number, s.phase, s.start.isoformat(), s.status.value, s.duration_minutes, s.format,
         list(s.participants), list(s.optional_participants), s.end.isoformat(), s.therapist,
         s.original_start.isoformat() if s.original_start else None]
        for s in sessions
    ]  # fmt: skip


_JSON_LISTS: dict[tuple[str, ...], str] = {}


def _json_list(values: list[str]) -> str:
    key = tuple(values)
    text = _JSON_LISTS.get(key)
    if text is None:
        text = _JSON_LISTS[key] = json.dumps(values)
    return text


_LEASED = {"reminders": t.reminders, "digests": t.digests}
_REMINDER_COLUMNS = tuple(
    t.reminders.c[name] for name in ("course_id", "id", "kind", "audience", "due", "session", "rule", "attempts")
)
_DIGEST_COLUMNS = tuple(t.digests.c[name] for name in ("id", "therapist", "fire_local", "timezone", "due", "attempts"))


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


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _course_values(c: Course) -> dict[str, Any]:
    return {
        "client": c.client,
        "therapist": c.therapist,
        "protocol": c.protocol,
        "protocol_version": c.protocol_version,
        "timezone": c.timezone,
        "start_date": c.start,
        "slot": c.slot.strftime("%H:%M"),
        "state": c.state.value,
        "planned_sessions": c.planned_sessions,
        "focus": list(c.focus),
        "current_focus": c.current_focus,
        "foci_worked": list(c.foci_worked),
        "pauses": [p.model_dump(mode="json") for p in c.pauses],
        "fired_rules": list(c.fired_rules),
        "completed_at": c.completed_at,
        "created_at": c.created_at,
        "schema_version": c.schema_version,
    }


def _history_values(course_id: str, seq: int, h: HistoryEntry) -> dict[str, Any]:
    return {
        "course_id": course_id,
        "seq": seq,
        "event": h.event,
        "at": h.at,
        "from_state": h.from_.value if h.from_ else None,
        "to_state": h.to.value,
        "rule": h.rule,
        "data": h.data,
    }


def _measure_values(course_id: str, seq: int, m: Measurement) -> dict[str, Any]:
    return {
        "course_id": course_id,
        "seq": seq,
        "instrument": m.instrument,
        "score": m.score,
        "item9": m.item9,
        "at": m.at,
        "session": m.session,
    }


def _session_values(course_id: str, s: Session) -> dict[str, Any]:
    return {
        "course_id": course_id,
        "number": s.number,
        "phase": s.phase,
        "start_utc": s.start,
        "start_local": s.start.isoformat(),
        "status": s.status.value,
        "step": s.step,
        "duration_minutes": s.duration_minutes,
        "format": s.format,
        "participants": list(s.participants),
        "optional_participants": list(s.optional_participants),
    }


def _reminder_values(r: Reminder) -> dict[str, Any]:
    return {
        "id": r.id,
        "course_id": r.course,
        "kind": r.kind,
        "audience": r.audience,
        "due": r.due,
        "session": r.session,
        "status": "pending",
        "rule": r.rule,
        "attempts": 0,
    }


def _session(row: Any) -> Session:
    return Session(
        number=row["number"],
        phase=row["phase"],
        start=datetime.fromisoformat(row["start_local"]),
        status=SessionStatus(row["status"]),
        step=row["step"],
        duration_minutes=row["duration_minutes"],
        format=row["format"],
        participants=row["participants"],
        optional_participants=row["optional_participants"],
    )


def _reminder(row: Any) -> Reminder:
    return Reminder(
        id=row["id"],
        course=row["course_id"],
        kind=row["kind"],
        audience=row["audience"],
        due=row["due"],
        session=row["session"],
        status=row["status"],
        rule=row["rule"],
    )


__all__ = ["HEAD_REVISION", "NewReminder", "Rows", "SqlStore", "build_new_rows", "build_rows", "engine_for", "upgrade"]
