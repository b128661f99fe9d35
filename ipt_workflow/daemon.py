"""The long-running daemon: APScheduler 3 only wakes the dispatcher, it never holds reminders.

Two wake-up jobs: ``next`` is a date job at the earliest pending due instant, re-armed after
every dispatch; ``sweep`` is an interval job that polls the store (cheaply: the earliest due
instant) and re-arms ``next`` when courses changed, and dispatches whatever is due, so a
missed wake-up is never more than one sweep late. Both run with coalesce, one instance at a
time and no misfire grace limit (APScheduler's default of 1 s silently skips jobs).

SIGTERM and SIGINT stop the scheduler after the batch in flight; the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .dispatch import dispatch_due
from .sinks import Sink
from .storage.sql import SqlStore

log = logging.getLogger("ipt_workflow.daemon")


class Daemon:
    """Dispatch due reminders from ``store`` to ``sinks`` until stopped."""

    def __init__(
        self,
        store: SqlStore,
        sinks: Sequence[Sink],
        clock: Callable[[], datetime],
        sweep_seconds: float = 5.0,
        health_file: Path | None = None,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = store
        self.sinks = sinks
        self.clock = clock
        self.health_file = health_file
        self.stopped = threading.Event()
        self.lock = threading.Lock()  # one dispatch at a time, whichever job woke it
        defaults: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        self.scheduler = BackgroundScheduler(job_defaults=defaults, timezone="UTC")
        self.scheduler.add_job(self.sweep, "interval", seconds=sweep_seconds, id="sweep")
        self.armed: datetime | None = None

    def dispatch(self) -> None:
        with self.lock:
            now = self.clock()
            result = dispatch_due(self.store, now, self.sinks)
            if result.batches:
                log.info("dispatched delivered=%d skipped=%d", result.delivered, result.skipped)
            self.arm(self.store.next_due())
            if self.health_file is not None:
                self.health_file.touch()

    def sweep(self) -> None:
        nxt = self.store.next_due()
        if nxt is not None and nxt <= self.clock():
            self.dispatch()
        elif nxt != self.armed:
            self.arm(nxt)
        if self.health_file is not None:
            self.health_file.touch()

    def arm(self, when: datetime | None) -> None:
        """(Re-)schedule the ``next`` wake-up at ``when``; none when nothing is pending."""
        self.armed = when
        if when is None:
            if self.scheduler.get_job("next"):
                self.scheduler.remove_job("next")
            return
        self.scheduler.add_job(self.dispatch, "date", run_date=max(when, self.clock()), id="next",
                               replace_existing=True)  # fmt: skip

    def run(self) -> None:
        """Start, dispatch what is already due, and block until SIGTERM/SIGINT (or ``stop``)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopped.set())
        self.scheduler.start()
        self.dispatch()
        while not self.stopped.wait(0.5):
            pass
        self.scheduler.shutdown(wait=True)  # the batch in flight finishes first
        log.info("stopped")

    def stop(self) -> None:
        self.stopped.set()
