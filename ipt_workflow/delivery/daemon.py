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

A store that fails (another process holds the SQLite lock longer than ``lock_wait``, the
server is down) costs one log line; the next sweep tries again. On SQLite each wake-up first
checks that the file at the database's path is still the one opened (device and inode): a
file moved into place is reopened, a deleted one stops the daemon with status 1. Each sweep
also empties the write-ahead log into the file, so a file moved into place later does not
inherit pages of this one.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from ..core.errors import SinkError, StoreError
from ..core.policy import ClinicPolicy
from ..storage import DEFAULT_LOCK_TIMEOUT, sqlite_file
from ..storage.sql import NOTIFY_CHANNEL, SqlStore
from .dispatch import LEASE, Check, Dispatched, dispatch_due
from .sinks import Sink

if TYPE_CHECKING:
    from .metrics import Metrics

LOCK_WAIT = DEFAULT_LOCK_TIMEOUT  # seconds a store operation waits for another process's lock

log = logging.getLogger("ipt_workflow.delivery.daemon")


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
        lease: timedelta = LEASE,
        lock_wait: float = LOCK_WAIT,
        check: Check | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = store
        self.check = check  # see dispatch_due: no reminder of a plan made under other rules goes out
        self.sinks = sinks
        self.clock = clock
        self.clinic = clinic
        self.batch = batch
        self.lease = lease
        self.lock_wait = lock_wait
        self.sweep_seconds = sweep_seconds
        self.metrics = metrics
        self.health_file = health_file
        self.path = sqlite_file.database_path(store.engine)
        self.opened = sqlite_file.identity(self.path) if self.path else None
        self.stopped = threading.Event()
        self.signalled = False
        self.status = 0  # the exit status run() returns
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
        with self.lock, self.store_trouble():
            if self.stopped.is_set() or not self.same_file():
                return
            now = self.clock()
            try:
                result = dispatch_due(self.store, now, self.sinks, batch=self.batch, stop=self.stopping,
                                      lease=self.lease, clock=self.clock, check=self.check)  # fmt: skip
            except SinkError as exc:  # a full disk: the batch stays pending and goes out after its lease
                log.error("sink error=%r", str(exc))
                result = Dispatched()
            if self.metrics is not None:
                self.metrics.record(result.by_kind)
            if result.batches:
                log.info(
                    "dispatched delivered=%d skipped=%d retried=%d failed=%d dropped=%d digests=%d",
                    result.delivered, result.skipped, result.retried, result.failed, result.dropped, result.digests,
                )  # fmt: skip
            self.arm(self.store.next_due())
            self.touch()

    def digest(self) -> None:
        """Record the digests of the clinic's firings so far today (idempotent) and send them."""
        from .digests import record_digests

        assert self.clinic is not None
        with self.lock, self.store_trouble():
            if self.stopped.is_set() or not self.same_file():
                return
            added = record_digests(self.store, self.clinic, self.clock())
            if added:
                log.info("digests recorded=%d", added)
            self.dispatch()  # not after a store error: one line a wake-up

    def sweep(self) -> None:
        with self.lock, self.store_trouble():
            if self.stopped.is_set() or not self.same_file():
                return
            nxt = self.store.next_due()
            if nxt is not None and nxt <= self.clock():
                self.dispatch()
            elif nxt != self.armed:
                self.arm(nxt)
            if self.path is not None:
                sqlite_file.truncate_wal(self.store.engine, self.path, self.lock_wait)
            if self.metrics is not None:
                self.metrics.swept(self.store.due_pending(self.clock()))
            self.touch()

    @contextmanager
    def store_trouble(self) -> Iterator[None]:
        """A store error ends this wake-up with one log line; the next sweep tries again."""
        try:
            yield
        except (SQLAlchemyError, StoreError) as exc:
            if sqlite_file.is_locked(exc):
                self.locked()
            else:
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1] or [type(exc).__name__]
                log.error("store error=%s retry_in=%gs", reason[0], self.sweep_seconds)

    def locked(self) -> None:
        log.warning("database locked waited=%gs retry_in=%gs", self.lock_wait, self.sweep_seconds)

    def same_file(self) -> bool:
        """True when the database file is the one opened, or has been reopened after it was
        replaced; False (and the daemon stopping with status 1) when it was deleted."""
        if self.path is None:
            return True
        now = sqlite_file.identity(self.path)
        if now == self.opened:
            return True
        if now is None:
            log.error("database file deleted path=%s: stopping with status 1", self.path)
            self.status = 1
            return False
        log.warning("database file replaced path=%s: reopening", self.path)
        self.store.reopen()
        self.opened = now
        self.armed = None
        return True

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

    def run(self) -> int:
        """Start, dispatch what is already due, and block until SIGTERM/SIGINT (or ``stop``);
        the exit status: 0, or 1 when the database file was deleted."""
        try:  # a database that cannot be ours stops the start; one locked by another process does not
            self.store.ensure_schema()
        except StoreError as exc:
            if not sqlite_file.is_locked(exc):
                raise
            self.locked()
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
        while not (self.signalled or self.status or self.stopped.is_set()):
            time.sleep(0.1)
        log.info("stopping")
        self.stopped.set()  # a dispatch in flight ends after its current batch
        with self.lock:  # wait for it; any job that runs later sees ``stopped`` and returns
            # Not shutdown(wait=True): it holds APScheduler's job-store lock while it waits, and
            # a job that re-arms ``next`` would wait for that lock for ever.
            self.scheduler.shutdown(wait=False)
        log.info("stopped status=%d", self.status)
        return self.status

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signalled = True

    def stopping(self) -> bool:
        """Asked between batches: a signal or ``stop()`` came, or the database file went."""
        return self.signalled or bool(self.status) or self.stopped.is_set()

    def stop(self) -> None:
        self.stopped.set()


def precise_clock() -> datetime:
    """The system clock with microseconds (``emitted_at`` and lag are measured with it)."""
    return datetime.now(UTC)


def clock_from(start: datetime) -> Callable[[], datetime]:
    """A clock set to ``start`` now, running at real speed from there (``ipt daemon --now``)."""
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)
