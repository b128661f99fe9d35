"""The library facade: one object for clinic software that embeds ipt-workflow.

with Workflow("postgresql://clinic@db/ipt") as wf:
    course = wf.create_course(client="CL-0042", start="2026-03-02", time="10:00", tz="Europe/London")
    wf.apply(course.id, "complete_intake")

Parameters take Python values or their ISO text: ``start`` a ``date`` or 'YYYY-MM-DD', ``time``
a ``time`` or 'HH:MM', ``tz`` a ``ZoneInfo`` or an IANA name, instants (``at``, ``now``,
``start``/``until`` of ``reminders``) an aware ``datetime`` or ISO 8601 text. A naive
``datetime`` is refused everywhere with the same message. Errors name these parameters.
Every method returns pydantic models (or lists of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from . import importing, services
from .bootstrap import rules_from, store_for, utc_now
from .core.model import Absence, Course, CourseState, Effects, Group, Plan, Reminder, ReminderStatus
from .core.values import DateLike, InstantLike, TimeLike, ZoneLike, as_choice, as_instant
from .core.wallclock import zone
from .results import (
    AgendaEntry,
    CaseloadRow,
    CourseSummary,
    GroupSummary,
    GroupView,
    IngestResult,
    RuleChangeReport,
    SlotOption,
)
from .rulebook.files import Rulebook

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .absences import AbsenceChange
    from .delivery.dispatch import Dispatched
    from .delivery.host import HostJobs
    from .delivery.sinks import Sink


class Attachment(BaseModel):
    """Our jobs in a host's APScheduler scheduler: its job store alias and the job ids."""

    model_config = ConfigDict(frozen=True)

    jobstore: str
    jobs: list[str]


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
        self._host: HostJobs | None = None

    def __enter__(self) -> Workflow:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Take our jobs out of a host's scheduler (``detach``) and dispose of the connections
        (not of a host's engine)."""
        self.detach()
        self.store.close()

    def create_course(
        self,
        *,
        client: str,
        start: DateLike,
        time: TimeLike,
        tz: ZoneLike,
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
        at: InstantLike | None = None,
        expected_version: int | None = None,
        retries: int = 0,
    ) -> Course:
        """Apply ``event`` (at ``at``, default now) in one transaction; returns the new course.

        Raises ConflictError when another writer saved the course first (or it is not at
        ``expected_version``); with ``retries`` it reloads and tries again that many times.
        Raises InvalidInput when ``at`` is more than a day after the clock.
        ``at`` text without an offset is wall-clock time in the course's zone.
        The effects (reminders added and cancelled) are in ``last_effects``."""
        from .core.errors import ConflictError

        when = self._instant(at, "at", course_id) if at is not None else None
        for attempt in range(retries + 1):
            now = self.clock()
            try:
                applied = services.apply_event(
                    self.store, self.rules, course_id, event, when or now, now, data, expected_version
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
        start: DateLike,
        time: TimeLike,
        tz: ZoneLike,
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
        self, group_id: str, *, client: str, course_id: str | None = None, pre: list[InstantLike] | None = None
    ) -> Course:
        """Add a member to a group: their course, pre-group session(s) at ``pre`` or in the
        therapist's first free working-hour slots in the 14 days before the group starts."""
        from . import groups

        return groups.add_member(
            self.store, self.rules, group_id, client=client, now=self.clock(), course_id=course_id, pre=pre
        ).course

    def group(self, group_id: str) -> GroupView:
        """The group as SPEC §10's JSON (``.model_dump(mode="json")``)."""
        from . import groups

        return GroupView.model_validate(groups.group_json(self.store, self.rules, group_id))

    def groups(self) -> list[GroupSummary]:
        """Every group, by id."""
        return [GroupSummary.model_validate(g) for g in self.store.groups()]

    def group_event(
        self, group_id: str, event: str, data: dict[str, Any] | None = None, *, at: InstantLike | None = None
    ) -> Group:
        """Record a group event for the group and every member in one transaction; ``at``
        text without an offset is wall-clock time in the group's zone."""
        from . import groups

        when = None
        if at is not None:
            when = as_instant(at, "at", zone(self.store.load_group(group_id).timezone) if isinstance(at, str) else None)
        now = self.clock()
        return groups.apply_group_event(self.store, self.rules, group_id, event, when or now, now, data).group

    def course(self, course_id: str) -> Course:
        return self.store.load(course_id)

    def plan(self, course_id: str) -> Plan:
        """Every session and every stored reminder (with its status) of the course."""
        return services.show(self.store, self.rules, course_id)[1]

    def courses(self, state: str | CourseState | None = None, therapist: str | None = None) -> list[CourseSummary]:
        """Courses by id, in ``state`` and of ``therapist`` when given; an unknown state is
        refused (InvalidInput listing the states)."""
        if state is not None:
            state = as_choice(str(state), "state", [s.value for s in CourseState])
        return [CourseSummary.model_validate(r) for r in self.store.courses(state, therapist)]

    def reminders(
        self,
        course: str | None = None,
        start: InstantLike | None = None,
        until: InstantLike | None = None,
        status: str | ReminderStatus | None = None,
    ) -> list[Reminder]:
        """Stored reminders in due order, ``start <= due < until`` (text without an offset:
        UTC); an unknown status is refused (InvalidInput listing the statuses)."""
        lo = as_instant(start, "start") if start is not None else None
        hi = as_instant(until, "until") if until is not None else None
        if status is not None:
            status = as_choice(str(status), "status", [s.value for s in ReminderStatus])
        return self.store.reminders(course, lo, hi, status)

    def dispatch(
        self, sinks: Sequence[Callable[[dict[str, Any]], object] | Sink], now: InstantLike | None = None
    ) -> Dispatched:
        """Emit every reminder, alert and therapist digest due at ``now`` (default: the clock)
        to ``sinks``: Python callables taking one event dict (an exception means "try again
        later"), or sink objects. Digests of the clinic's ``digest.cron`` firings so far today
        are recorded first, as the daemon does (each goes out once, however often this runs)."""
        from .delivery.host import dispatch_with_digests
        from .rulechanges import RulesWatch

        when = as_instant(now, "now") if now is not None else self.clock()
        check = RulesWatch(self.store, self.rules, None, reload=False)
        return dispatch_with_digests(self.store, self.rules.clinic, when, _sinks(sinks), check=check)

    def attach(
        self,
        scheduler: Any,
        sinks: Sequence[Callable[[dict[str, Any]], object] | Sink],
        *,
        sweep_seconds: float = 5.0,
        prefix: str = "ipt:",
    ) -> Attachment:
        """Add our wake-up jobs to a host's APScheduler 3 scheduler (``BackgroundScheduler``,
        ``BlockingScheduler``, started or not): ``<prefix>next`` at the next due instant,
        ``<prefix>sweep`` every ``sweep_seconds``, ``<prefix>digest`` on the clinic's digest
        cron; each dispatches to ``sinks`` as ``dispatch`` does. They sit in a memory job store
        of their own (``<prefix>jobs``), so a persistent host store never pickles them.
        Raises InvalidInput when this workflow is attached already."""
        from .core.errors import InvalidInput
        from .delivery.host import HostJobs
        from .rulechanges import RulesWatch

        if self._host is not None:
            raise InvalidInput("scheduler: this workflow is attached already (detach() first)")
        if not 0.05 <= sweep_seconds <= 86400:
            raise InvalidInput(f"sweep_seconds: {sweep_seconds} is not between 0.05 and 86400")
        try:
            check = RulesWatch(self.store, self.rules, None, reload=False)
            self._host = HostJobs(scheduler, self.store, self.rules.clinic, _sinks(sinks), self.clock,
                                  sweep_seconds=sweep_seconds, prefix=prefix, check=check)  # fmt: skip
        except ValueError as exc:  # the job store alias is taken
            raise InvalidInput(f"scheduler: {exc}") from None
        return Attachment(jobstore=self._host.jobstore, jobs=self._host.job_ids)

    def detach(self) -> Attachment | None:
        """Remove exactly our jobs (and their job store) from the host's scheduler, after a
        dispatch in flight; nothing is emitted by them afterwards. The host's jobs stay. The
        ids removed, or None when not attached."""
        host, self._host = self._host, None
        if host is None:
            return None
        return Attachment(jobstore=host.jobstore, jobs=host.remove())

    def replan(self, courses: Sequence[str] | None = None, dry_run: bool = False) -> RuleChangeReport:
        """Apply the rules in force to every running course planned under other rules (or to
        ``courses``), compared with the plan as stored (``ipt replan``); ``.json()`` is the
        report of SPEC §11."""
        from .rulechanges import replan

        done = replan(self.store, self.rules, self.clock(), courses, dry_run)
        return RuleChangeReport.model_validate(done.json())

    def migrate(
        self, protocol: str, to: str, courses: Sequence[str] | None = None, dry_run: bool = False
    ) -> RuleChangeReport:
        """Move running courses of ``protocol`` onto version ``to`` (``ipt rules migrate``): one
        transaction per course; a course the version cannot take is refused with the reason.
        Raises UnknownName for an unknown protocol, version or course (nothing written)."""
        from .rulechanges import migrate

        done = migrate(self.store, self.rules, protocol, to, self.clock(), courses, dry_run)
        return RuleChangeReport.model_validate(done.json())

    def _instant(self, value: InstantLike, name: str, course_id: str) -> datetime:
        """An instant given for a course: text without an offset is in the course's zone."""
        local = zone(self.store.load(course_id).timezone) if isinstance(value, str) else None
        return as_instant(value, name, local)

    def import_csv(
        self, path: str | Path, *, skip_bad: bool = False, allow_clash: bool = False
    ) -> importing.ImportReport:
        """Create the courses of a CSV (see ``importing.import_csv``); a row that clashes is a
        bad row unless ``allow_clash``."""
        return importing.import_csv(
            self.store, self.rules, Path(path), self.clock(), skip_bad=skip_bad, allow_clash=allow_clash
        )

    # ------------------------------------------------------------ reports (SPEC §13)

    def report(self, course_id: str) -> str:
        """The course report (``ipt report``) as one self-contained HTML document, as of the
        clock. Raises UnknownName for an unknown id."""
        from .reports import course_report

        return course_report(self.store.engine, course_id, self.clock(), self._planned_shape)

    def caseload(self, therapist: str | None = None) -> list[CaseloadRow]:
        """The active courses (of ``therapist``) as ``ipt caseload --json`` gives them."""
        from .reports import caseload

        rows = caseload(self.store.engine, therapist, self.clock(), self._planned_shape)
        return [CaseloadRow.model_validate(r) for r in rows]

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

    def ingest_fhir(self, document: dict[str, Any]) -> IngestResult:
        """Apply a FHIR Bundle or resource (a parsed JSON dict) as course events, all or
        nothing, each resource version once; raises InvalidInput (one line per bad resource)."""
        from . import exchange

        done = exchange.ingest_fhir(self.store, self.rules, document, self.clock())
        return IngestResult(applied=done.applied, already=done.already, unchanged=done.unchanged)

    # ------------------------------------------------------------ calendar (SPEC §9)

    def add_absence(self, therapist: str, start: DateLike, until: DateLike, reason: str | None = None) -> AbsenceChange:
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
        self, therapist: str | None = None, start: DateLike | None = None, until: DateLike | None = None
    ) -> list[AgendaEntry]:
        """The agenda entries of SPEC §9 (``{therapist, course, group, client, session, phase,
        start, end, status, original_start}``) from ``start`` to ``until`` (ISO dates, both
        included; default: this week in the clinic's zone), in start order."""
        from . import agenda

        lo, hi = agenda.agenda_window(self.rules.clinic.timezone, self.clock(), start, until)
        replan = lambda cid: agenda.stored_sessions(self.store, self.rules, cid)  # noqa: E731
        return [AgendaEntry.model_validate(r) for r in agenda.agenda(self.store.engine, therapist, lo, hi, replan).rows]

    def slots(
        self,
        therapist: str,
        start: DateLike,
        *,
        protocol: str | None = None,
        weekdays: str | None = None,
        between: str | None = None,
        step: str = "15m",
        limit: int = 10,
        tz: ZoneLike | None = None,
    ) -> list[SlotOption]:
        """Weekly slots for a new course of ``therapist`` in the week from ``start`` (``ipt
        slots``): ``weekdays`` ("mon,tue"; default the working days), ``between``
        ("09:00-12:00"; default the working hours), ``step`` between times tried, at most
        ``limit``, in zone ``tz`` (default the clinic's), for ``protocol`` (default ipt-16)."""
        from . import agenda

        query = agenda.slot_query(self.rules, therapist=therapist, start=start, protocol=protocol, weekdays=weekdays,
                                  between=between, step=step, limit=limit, tz=tz)  # fmt: skip
        return [SlotOption.model_validate(s) for s in agenda.slots(self.store, self.rules, query, self.clock())]


def _sinks(sinks: Sequence[Callable[[dict[str, Any]], object] | Sink]) -> list[Sink]:
    from .delivery.sinks import CallableSink

    return [s if not callable(s) else CallableSink(s) for s in sinks]
