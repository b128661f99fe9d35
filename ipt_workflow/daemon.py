"""The long-running daemon: APScheduler 3 only wakes the dispatcher, it never holds reminders.

Wake-up jobs: ``next`` is a date job at the instant the next pending reminder or digest can
be claimed, re-armed after every dispatch; ``sweep`` is an interval job that polls the store
(cheaply: that instant) and re-arms ``next`` when courses changed, and dispatches whatever is
due, so a missed wake-up is never more than one sweep late; ``digest`` is a cron job in the
clinic's zone that records the therapist digests of that firing and dispatches them. All run
with coalesce, one instance at a time and no misfire grace limit (APScheduler's default of
1 s silently skips jobs). On PostgreSQL a listener thread waits on ``LISTEN ipt_reminders``,
which every course change notifies, and sweeps at once: an alert recorded by another process
goes out within milliseconds rather than at the next sweep.

SIGTERM and SIGINT stop the scheduler after the batch in flight; the process exits 0.
SIGUSR1 writes every thread's stack to stderr (for a daemon that seems stuck).
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .dispatch import Dispatched, dispatch_due
from .errors import SinkError
from .protocol import ClinicPolicy
from .sinks import Sink
from .storage.sql import NOTIFY_CHANNEL, SqlStore

log = logging.getLogger("ipt_workflow.daemon")


class Daemon:
    """Dispatch due reminders and digests from ``store`` to ``sinks`` until stopped."""

    def __init__(
        self,
        store: SqlStore,
        sinks: Sequence[Sink],
        clock: Callable[[], datetime],
        sweep_seconds: float = 5.0,
        health_file: Path | None = None,
        clinic: ClinicPolicy | None = None,
        batch: int = 1000,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = store
        self.sinks = sinks
        self.clock = clock
        self.clinic = clinic
        self.batch = batch
        self.health_file = health_file
        self.stopped = threading.Event()
        self.signalled = False
        self.lock = threading.RLock()  # one dispatch at a time, whichever job woke it
        defaults: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        zone = clinic.timezone if clinic is not None else "UTC"  # wake-ups are aware instants either way
        self.scheduler = BackgroundScheduler(job_defaults=defaults, timezone=zone)
        self.scheduler.add_job(self.sweep, "interval", seconds=sweep_seconds, id="sweep")
        if clinic is not None and clinic.digest.cron:
            from .digests import cron_trigger

            self.scheduler.add_job(self.digest, cron_trigger(clinic.digest.cron, clinic.timezone), id="digest")
        self.armed: datetime | None = None

    def dispatch(self) -> None:
        with self.lock:
            if self.stopped.is_set():
                return
            now = self.clock()
            try:
                result = dispatch_due(self.store, now, self.sinks, batch=self.batch, stop=self.stopping)
            except SinkError as exc:  # a full disk: the batch stays pending and goes out after its lease
                log.error("sink error=%r", str(exc))
                result = Dispatched()
            if result.batches:
                log.info(
                    "dispatched delivered=%d skipped=%d retried=%d failed=%d digests=%d",
                    result.delivered, result.skipped, result.retried, result.failed, result.digests,
                )  # fmt: skip
            self.arm(self.store.next_due())
            self.touch()

    def digest(self) -> None:
        """Record the digests of the clinic's firings so far today (idempotent) and send them."""
        from .digests import record_digests

        assert self.clinic is not None
        with self.lock:
            if self.stopped.is_set():
                return
            added = record_digests(self.store, self.clinic, self.clock())
            if added:
                log.info("digests recorded=%d", added)
            self.dispatch()

    def sweep(self) -> None:
        with self.lock:
            if self.stopped.is_set():
                return
            nxt = self.store.next_due()
            if nxt is not None and nxt <= self.clock():
                self.dispatch()
            elif nxt != self.armed:
                self.arm(nxt)
            self.touch()

    def touch(self) -> None:
        if self.health_file is not None:
            self.health_file.touch()

    def arm(self, when: datetime | None) -> None:
        """(Re-)schedule the ``next`` wake-up at ``when`` (an instant on the daemon's clock,
        which ``--now`` may have set in the past or future; APScheduler runs on the real one);
        none when nothing is pending."""
        if self.stopped.is_set():
            return
        self.armed = when
        if when is None:
            if self.scheduler.get_job("next"):
                self.scheduler.remove_job("next")
            return
        delay = max(when - self.clock(), timedelta(0))
        self.scheduler.add_job(self.dispatch, "date", run_date=datetime.now(UTC) + delay, id="next",
                               replace_existing=True)  # fmt: skip

    def listen(self) -> None:
        """PostgreSQL only: sweep as soon as a course change is notified; reconnect on error."""
        while not self.stopped.is_set():
            try:
                raw = self.store.engine.raw_connection()
                try:
                    conn: Any = raw.driver_connection
                    conn.autocommit = True
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    log.info("listening channel=%s", NOTIFY_CHANNEL)
                    while not self.stopped.is_set():
                        if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                            self.sweep()
                finally:
                    raw.invalidate()  # never hand a LISTENing connection back to the pool
            except Exception as exc:  # the periodic sweep covers the gap
                log.warning("listen error=%s retry_in=5s", type(exc).__name__)
                self.stopped.wait(5)

    def run(self) -> None:
        """Start, dispatch what is already due, and block until SIGTERM/SIGINT (or ``stop``)."""
        # The handler only sets a flag: Event.set() takes a lock that the interrupted main
        # thread may be holding inside Event.wait(), and would deadlock it.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack on stderr
        self.scheduler.start()
        if self.store.dialect == "postgresql":
            threading.Thread(target=self.listen, name="ipt-listen", daemon=True).start()
        log.info("started dialect=%s", self.store.dialect)
        if self.clinic is not None and self.clinic.digest.cron:
            self.digest()  # a firing missed earlier today while nothing ran goes out now, late
        else:
            self.dispatch()
        while not (self.signalled or self.stopped.is_set()):
            time.sleep(0.1)
        log.info("stopping")
        self.stopped.set()  # a dispatch in flight ends after its current batch
        with self.lock:  # wait for it; any job that runs later sees ``stopped`` and returns
            # Not shutdown(wait=True): it holds APScheduler's job-store lock while it waits, and
            # a job that re-arms ``next`` would wait for that lock for ever.
            self.scheduler.shutdown(wait=False)
        log.info("stopped")

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signalled = True

    def stopping(self) -> bool:
        """Asked between batches: a signal or ``stop()`` came."""
        return self.signalled or self.stopped.is_set()

    def stop(self) -> None:
        self.stopped.set()


def precise_clock() -> datetime:
    """The system clock with microseconds (``emitted_at`` and lag are measured with it)."""
    return datetime.now(UTC)


def clock_from(start: datetime) -> Callable[[], datetime]:
    """A clock set to ``start`` now, running at real speed from there (``ipt daemon --now``)."""
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)
