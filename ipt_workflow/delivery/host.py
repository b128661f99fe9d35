"""Our wake-up jobs in a host application's APScheduler 3 scheduler (``Workflow.attach``).

A clinic system that already runs a ``BackgroundScheduler`` (or ``BlockingScheduler``) lets
it drive dispatch instead of running ``ipt daemon`` beside it. The jobs are the daemon's:

- ``<prefix>next``: a date job at the instant the next pending reminder or digest can be
  claimed, re-armed after every dispatch;
- ``<prefix>sweep``: an interval job that dispatches whatever is due and re-arms ``next``
  (so a course changed by another process is seen within one sweep);
- ``<prefix>digest``: a cron job (the clinic's ``digest.cron``, in its zone) that records
  the therapist digests of that firing and dispatches them.

They live in a job store of their own (a ``MemoryJobStore`` named ``<prefix>jobs``): a host
whose default store is persistent (``SQLAlchemyJobStore`` pickles jobs) is never asked to
pickle ours, and reminders stay the engine's own rows. ``detach`` removes exactly these jobs
and that store, waits for a dispatch in flight, and nothing is emitted after it returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..core.errors import IptError
from ..core.policy import ClinicPolicy
from ..storage.sql import SqlStore
from .dispatch import Check, Dispatched, dispatch_due
from .sinks import Sink

log = logging.getLogger("ipt_workflow.delivery.host")

DEFAULT_PREFIX = "ipt:"
JOB_OPTIONS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


def dispatch_with_digests(
    store: SqlStore,
    clinic: ClinicPolicy,
    now: datetime,
    sinks: Sequence[Sink],
    stop: Callable[[], bool] | None = None,
    clock: Callable[[], datetime] | None = None,
    check: Check | None = None,
) -> Dispatched:
    """Record the therapist digests of the clinic's firings so far today (idempotent, as the
    daemon does) and emit everything due at ``now``: reminders, alerts and digests. ``check``
    sees each claimed batch first (the rules-change check of ``rulechanges.RulesWatch``)."""
    if clinic.digest.cron:
        from .digests import record_digests

        added = record_digests(store, clinic, now)
        if added:
            log.info("digests recorded=%d", added)
    return dispatch_due(store, now, sinks, stop=stop, clock=clock, check=check)


class HostJobs:
    """Our jobs in ``scheduler``; ``remove()`` takes them out again."""

    def __init__(
        self,
        scheduler: Any,
        store: SqlStore,
        clinic: ClinicPolicy,
        sinks: Sequence[Sink],
        clock: Callable[[], datetime],
        sweep_seconds: float = 5.0,
        prefix: str = DEFAULT_PREFIX,
        check: Check | None = None,
    ) -> None:
        from apscheduler.jobstores.memory import MemoryJobStore

        self.scheduler = scheduler
        self.store = store
        self.clinic = clinic
        self.sinks = list(sinks)
        self.clock = clock
        self.check = check
        self.prefix = prefix
        self.jobstore = f"{prefix}jobs"
        self.stopped = threading.Event()
        self.lock = threading.RLock()  # one dispatch at a time, whichever job woke it
        self.armed: datetime | None = None
        scheduler.add_jobstore(MemoryJobStore(), alias=self.jobstore)  # ValueError if attached twice
        try:
            self._add(self.sweep, "sweep", "interval", seconds=sweep_seconds, next_run_time=datetime.now(UTC))
            if clinic.digest.cron:
                from .digests import cron_trigger

                self._add(self.digest, "digest", cron_trigger(clinic.digest.cron, clinic.timezone))
        except BaseException:
            self.remove()  # all or nothing: no job store of ours left behind
            raise

    @property
    def job_ids(self) -> list[str]:
        """Our jobs now in the scheduler, by id."""
        return sorted(job.id for job in self.scheduler.get_jobs(jobstore=self.jobstore))

    def _add(self, func: Callable[[], None], name: str, trigger: Any, **options: Any) -> None:
        self.scheduler.add_job(func, trigger, id=self.prefix + name, name=f"ipt-workflow {name}",
                               jobstore=self.jobstore, replace_existing=True, **JOB_OPTIONS, **options)  # fmt: skip

    def dispatch(self) -> None:
        """Emit what is due now, then arm ``next`` at the next due instant."""
        with self.lock:
            if self.stopped.is_set():
                return
            try:
                result = dispatch_with_digests(self.store, self.clinic, self.clock(), self.sinks,
                                               stop=self.stopped.is_set, check=self.check)  # fmt: skip
                if result.batches:
                    counts = (result.delivered, result.skipped, result.retried, result.failed, result.digests)
                    log.info("dispatched delivered=%d skipped=%d retried=%d failed=%d digests=%d", *counts)
                self.arm(self.store.next_due())
            except (IptError, SQLAlchemyError) as exc:  # one line; the next sweep tries again
                log.error("dispatch error=%s", (str(getattr(exc, "orig", None) or exc).splitlines() or ["?"])[0])

    def sweep(self) -> None:
        with self.lock:
            if self.stopped.is_set():
                return
            try:
                nxt = self.store.next_due()
            except (IptError, SQLAlchemyError) as exc:
                log.error("sweep error=%s", (str(getattr(exc, "orig", None) or exc).splitlines() or ["?"])[0])
                return
            if nxt is not None and nxt <= self.clock():
                self.dispatch()
            elif nxt != self.armed:
                self.arm(nxt)

    def digest(self) -> None:
        self.dispatch()  # records the firing's digests first

    def arm(self, when: datetime | None) -> None:
        """(Re-)schedule ``next`` at ``when`` on our clock (APScheduler runs on the real one)."""
        if self.stopped.is_set():
            return
        self.armed = when
        if when is None:
            if self.scheduler.get_job(self.prefix + "next", jobstore=self.jobstore) is not None:
                self.scheduler.remove_job(self.prefix + "next", jobstore=self.jobstore)
            return
        delay = max(when - self.clock(), timedelta(0))
        self._add(self.dispatch, "next", "date", run_date=datetime.now(UTC) + delay)

    def remove(self) -> list[str]:
        """Take our jobs and job store out of the scheduler (after a dispatch in flight); the
        ids removed. The host's own jobs are left as they are."""
        self.stopped.set()
        with self.lock:
            removed = self.job_ids
            for job_id in removed:
                self.scheduler.remove_job(job_id, jobstore=self.jobstore)
            self.scheduler.remove_jobstore(self.jobstore)
        return removed
