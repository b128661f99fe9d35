"""The library facade: one object for clinic software that embeds ipt-workflow.

with Workflow("postgresql://clinic@db/ipt") as wf:
    course = wf.create_course(client="CL-0042", start="2026-03-02", time="10:00", tz="Europe/London")
    wf.apply(course.id, "complete_intake")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from . import services
from .bootstrap import rules_from, store_for, utc_now
from .core.model import Absence, Course, Effects, Group, Plan, Reminder
from .rulebook.files import Rulebook

if TYPE_CHECKING:
    from .absences import AbsenceChange
    from .delivery.dispatch import Dispatched
    from .delivery.sinks import Sink
    from .exchange import IngestReport
    from .rulechanges import ChangeReport


class Workflow:
    """Courses in a database, run by the rules. ``url`` is a ``postgresql://`` URL, an
    ``sqlite:///`` URL or a file path (default: ``IPT_DB``, else the user data directory);
    or pass ``engine=`` to share a host application's SQLAlchemy engine, which is then left
    open. ``clock`` returns the aware "now" (default: the system clock, whole seconds)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        rules: str | Path | Rulebook | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.rules = rules_from(rules)
        self.store = store_for(url, engine)
        self.clock = clock
        self.store.ensure_schema()
        self.last_effects: Effects | None = None

    def __enter__(self) -> Workflow:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Dispose of the connections (not of a host's engine)."""
        self.store.close()

    def create_course(
        self,
        *,
        client: str,
        start: str,
        time: str,
        tz: str,
        protocol: str = services.DEFAULT_PROTOCOL,
        therapist: str = "unassigned",
        course_id: str | None = None,
        allow_clash: bool = False,
    ) -> Course:
        """Create a course with its plan and reminders; returns it (version 1). ``protocol`` is
        ``ID`` (its highest version) or ``ID@VERSION``; the course keeps that version. Raises
        ScheduleClash when its plan books the therapist over another course's session, unless
        ``allow_clash`` (booked anyway, with a ``schedule_conflict`` therapist alert)."""
        now = self.clock()
        course, plan = services.build_course(
            self.rules, client=client, start=start, time=time, tz=tz, now=now,
            protocol_id=protocol, therapist=therapist, course_id=course_id,
        )  # fmt: skip
        return services.store_course(self.store, self.rules, course, plan, now, allow_clash=allow_clash).course

    def apply(
        self,
        course_id: str,
        event: str,
        data: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        expected_version: int | None = None,
        retries: int = 0,
    ) -> Course:
        """Apply ``event`` (at ``at``, default now) in one transaction; returns the new course.

        Raises ConflictError when another writer saved the course first (or it is not at
        ``expected_version``); with ``retries`` it reloads and tries again that many times.
        Raises InvalidInput when ``at`` is more than a day after the clock.
        The effects (reminders added and cancelled) are in ``last_effects``."""
        from .core.errors import ConflictError

        for attempt in range(retries + 1):
            now = self.clock()
            try:
                applied = services.apply_event(
                    self.store, self.rules, course_id, event, at or now, now, data, expected_version
                )
            except ConflictError:
                if attempt == retries or expected_version is not None:
                    raise
                continue
            self.last_effects = applied.effects
            return applied.course
        raise AssertionError("unreachable")

    def create_group(
        self,
        *,
        protocol: str,
        therapist: str,
        start: str,
        time: str,
        tz: str,
        cotherapist: str | None = None,
        group_id: str | None = None,
        min: int = 4,
        max: int = 12,
        allow_clash: bool = False,
    ) -> Group:
        """Create a group (SPEC §10) of a ``format: group`` protocol with its schedule."""
        from . import groups

        return groups.create_group(
            self.store, self.rules, protocol_id=protocol, therapist=therapist, start=start, time=time, tz=tz,
            now=self.clock(), cotherapist=cotherapist, group_id=group_id, min_size=min, max_size=max,
            allow_clash=allow_clash,
        ).group  # fmt: skip

    def add_member(
        self, group_id: str, *, client: str, course_id: str | None = None, pre: list[str] | None = None
    ) -> Course:
        """Add a member to a group: their course, pre-group session(s) at ``pre`` or in the
        therapist's first free working-hour slots in the 14 days before the group starts."""
        from . import groups

        return groups.add_member(
            self.store, self.rules, group_id, client=client, now=self.clock(), course_id=course_id, pre=pre
        ).course

    def group(self, group_id: str) -> dict[str, Any]:
        """The group as SPEC §10's JSON."""
        from . import groups

        return groups.group_json(self.store, self.rules, group_id)

    def groups(self) -> list[dict[str, Any]]:
        return self.store.groups()

    def group_event(
        self, group_id: str, event: str, data: dict[str, Any] | None = None, *, at: datetime | None = None
    ) -> Group:
        """Record a group event for the group and every member in one transaction."""
        from . import groups

        now = self.clock()
        return groups.apply_group_event(self.store, self.rules, group_id, event, at or now, now, data).group

    def course(self, course_id: str) -> Course:
        return self.store.load(course_id)

    def plan(self, course_id: str) -> Plan:
        """Every session and every stored reminder (with its status) of the course."""
        return services.show(self.store, self.rules, course_id)[1]

    def courses(self, state: str | None = None, therapist: str | None = None) -> list[dict[str, Any]]:
        return self.store.courses(state, therapist)

    def reminders(
        self,
        course: str | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
    ) -> list[Reminder]:
        """Stored reminders in due order, ``start <= due < until``."""
        return self.store.reminders(course, start, until, status)

    def dispatch(
        self, sinks: Sequence[Callable[[dict[str, Any]], object] | Sink], now: datetime | None = None
    ) -> Dispatched:
        """Emit every reminder due at ``now`` (default: the clock) to ``sinks``: Python callables
        taking one event dict (an exception means "try again later"), or sink objects."""
        from .delivery.dispatch import dispatch_due
        from .delivery.sinks import CallableSink
        from .rulechanges import RulesWatch

        targets: list[Sink] = [s if not callable(s) else CallableSink(s) for s in sinks]
        check = RulesWatch(self.store, self.rules, None, reload=False)
        return dispatch_due(self.store, now or self.clock(), targets, check=check)

    def replan(self, courses: Sequence[str] | None = None, dry_run: bool = False) -> ChangeReport:
        """Apply the rules in force to every running course planned under other rules (or to
        ``courses``), compared with the plan as stored (``ipt replan``); ``.json()`` is the
        report of SPEC §11."""
        from .rulechanges import replan

        return replan(self.store, self.rules, self.clock(), courses, dry_run)

    def migrate(
        self, protocol: str, to: str, courses: Sequence[str] | None = None, dry_run: bool = False
    ) -> ChangeReport:
        """Move running courses of ``protocol`` onto version ``to`` (``ipt rules migrate``): one
        transaction per course; a course the version cannot take is refused with the reason.
        Raises UnknownName for an unknown protocol, version or course (nothing written)."""
        from .rulechanges import migrate

        return migrate(self.store, self.rules, protocol, to, self.clock(), courses, dry_run)

    def import_csv(
        self, path: str | Path, *, skip_bad: bool = False, allow_clash: bool = False
    ) -> services.ImportReport:
        """Create the courses of a CSV (see ``services.import_csv``); a row that clashes is a
        bad row unless ``allow_clash``."""
        return services.import_csv(
            self.store, self.rules, Path(path), self.clock(), skip_bad=skip_bad, allow_clash=allow_clash
        )

    # ------------------------------------------------------------ reports (SPEC §13)

    def report(self, course_id: str) -> str:
        """The course report (``ipt report``) as one self-contained HTML document, as of the
        clock. Raises UnknownName for an unknown id."""
        from .reports import course_report

        return course_report(self.store.engine, course_id, self.clock(), self._planned_shape)

    def caseload(self, therapist: str | None = None) -> list[dict[str, Any]]:
        """The active courses (of ``therapist``) as ``ipt caseload --json`` gives them."""
        from .reports import caseload

        return caseload(self.store.engine, therapist, self.clock(), self._planned_shape)

    def _planned_shape(self, course_id: str) -> dict[str, Any]:
        from .present.views import course_json

        return course_json(*services.show(self.store, self.rules, course_id))

    # ------------------------------------------------------------ FHIR (SPEC §12)

    def export_fhir(
        self, course_ids: Sequence[str] = (), *, every: bool = False, since: datetime | None = None
    ) -> dict[str, Any]:
        """A FHIR R4 transaction Bundle (a JSON dict) of the courses named, or ``every`` course
        (changed at or after ``since``); see ``exchange.export_fhir``."""
        from . import exchange

        return exchange.export_fhir(self.store, self.rules, course_ids, every, since)

    def ingest_fhir(self, document: dict[str, Any]) -> IngestReport:
        """Apply a FHIR Bundle or resource (a parsed JSON dict) as course events, all or
        nothing, each resource version once; raises InvalidInput (one line per bad resource)."""
        from . import exchange

        return exchange.ingest_fhir(self.store, self.rules, document, self.clock())

    # ------------------------------------------------------------ calendar (SPEC §9)

    def add_absence(self, therapist: str, start: str, until: str, reason: str | None = None) -> AbsenceChange:
        """Record a therapist's absence (``start`` to ``until``, ISO dates, both included) and
        move their planned sessions out of it, telling the clients; ``.absence.id`` is its id."""
        from . import absences

        return absences.add_absence(self.store, self.rules, therapist, start, until, self.clock(), reason)

    def remove_absence(self, absence_id: str) -> AbsenceChange:
        """Delete an absence; the sessions it moved go back to their series times."""
        from . import absences

        return absences.remove_absence(self.store, self.rules, absence_id, self.clock())

    def absences(self, therapist: str | None = None) -> list[Absence]:
        from . import absences

        return absences.list_absences(self.store, therapist)

    def agenda(
        self, therapist: str | None = None, start: str | None = None, until: str | None = None
    ) -> list[dict[str, Any]]:
        """The agenda entries of SPEC §9 (``{therapist, course, group, client, session, phase,
        start, end, status, original_start}``) from ``start`` to ``until`` (ISO dates, both
        included; default: this week in the clinic's zone), in start order."""
        from . import agenda

        lo, hi = agenda.agenda_window(self.rules.clinic.timezone, self.clock(), start, until)
        replan = lambda cid: agenda.stored_sessions(self.store, self.rules, cid)  # noqa: E731
        return agenda.agenda(self.store.engine, therapist, lo, hi, replan).rows

    def slots(self, therapist: str, start: str, **options: Any) -> list[dict[str, Any]]:
        """Weekly slots for a new course of ``therapist`` in the week from ``start`` (``ipt
        slots``): options ``protocol``, ``weekdays`` ("mon,tue"), ``between`` ("09:00-12:00"),
        ``step`` ("15m"), ``limit`` (10), ``tz``. ``{weekday, time, first, last, moved}`` each."""
        from . import agenda

        query = agenda.slot_query(self.rules, therapist=therapist, start=start, **options)
        return agenda.slots(self.store, self.rules, query, self.clock())
