"""``Workflow.attach``: a host application's own APScheduler 3 scheduler drives our dispatch
(issue 15). Real APScheduler (background and blocking), real threads, SQLite and
PostgreSQL; the workflow's clock runs 60 times real speed from just before the first
reminders, so minutes of clinic time pass in seconds. Each due reminder goes out once;
``detach`` removes exactly our jobs, the host's job keeps running, and nothing more is
emitted."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from ipt_workflow import InvalidInput, Workflow

T_SETUP = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
SPEED = 60.0  # clinic seconds per real second


class FastClock:
    """Fixed at ``T_SETUP`` until ``run_from(t)``; then ``t`` running at SPEED."""

    def __init__(self) -> None:
        self.start: datetime | None = None
        self.real0 = 0.0

    def run_from(self, start: datetime) -> None:
        self.real0 = time.monotonic()
        self.start = start

    def __call__(self) -> datetime:
        if self.start is None:
            return T_SETUP
        return self.start + timedelta(seconds=(time.monotonic() - self.real0) * SPEED)


def _wait_until(clock: FastClock, instant: datetime) -> None:
    while clock() < instant:
        time.sleep(0.05)


def _started(kind: str) -> Any:
    """A host's scheduler, running: a BackgroundScheduler, or a BlockingScheduler on a thread of
    the host's own (``start()`` blocks)."""
    if kind == "background":
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.start()
        return scheduler
    blocking = BlockingScheduler(timezone="UTC")
    threading.Thread(target=blocking.start, name="host-scheduler", daemon=True).start()
    deadline = time.monotonic() + 10
    while not blocking.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert blocking.running
    return blocking


@pytest.mark.parametrize("kind", ["background", "blocking"])
def test_a_host_scheduler_delivers_each_due_reminder_once_and_detach_removes_only_ours(kind: str, db_url: str) -> None:
    clock = FastClock()
    emitted: list[dict[str, Any]] = []
    lock = threading.Lock()

    def sink(event: dict[str, Any]) -> None:
        with lock:
            emitted.append(event)

    host_ticks: list[float] = []
    scheduler = _started(kind)
    scheduler.add_job(lambda: host_ticks.append(time.monotonic()), "interval", seconds=0.2, id="host-report")
    try:
        with Workflow(db_url, clock=clock) as wf:
            for n, minute in enumerate((0, 1, 2, 6)):  # first reminders due a clinic minute (a real second) apart
                wf.create_course(client=f"CL-{n}", start="2027-01-04", time=f"10:0{minute}", tz="Europe/London",
                                 therapist=f"th-{n}", course_id=f"c{n}")  # fmt: skip
            pending = wf.reminders(status="pending")
            first = min(r.due for r in pending)
            firsts = {f"c{n}": min(r.due for r in pending if r.course == f"c{n}") for n in range(4)}
            assert [firsts[f"c{n}"] - first for n in range(4)] == [timedelta(minutes=m) for m in (0, 1, 2, 6)]
            clock.run_from(first - timedelta(seconds=30))

            attached = wf.attach(scheduler, sinks=[sink], sweep_seconds=0.1)
            assert attached.jobstore == "ipt:jobs" and "ipt:sweep" in attached.jobs and "ipt:digest" in attached.jobs
            _wait_until(clock, first + timedelta(minutes=3, seconds=30))
            detached = wf.detach()
            assert detached is not None and "ipt:sweep" in detached.jobs
            detached_at = clock()

            due_then = {r.id for r in pending if r.due <= first + timedelta(minutes=2)}
            with lock:
                ids = [e["id"] for e in emitted]
                reminders = [e for e in emitted if e["type"] != "digest"]
                digests = [e for e in emitted if e["type"] == "digest"]
            assert sorted(e["id"] for e in reminders) == sorted(due_then)  # each due reminder once
            assert {e["course"] for e in reminders} == {"c0", "c1", "c2"}
            # today's 08:00 digest firing (before the clock started): one per therapist, late
            assert sorted(d["therapist"] for d in digests) == ["th-0", "th-1", "th-2", "th-3"]
            assert len(set(ids)) == len(ids) and all(d["late"] for d in digests)

            # the host's job is still there and running; ours and our job store are gone
            assert [j.id for j in scheduler.get_jobs()] == ["host-report"]
            scheduler.add_jobstore(MemoryJobStore(), alias="ipt:jobs")  # the alias is free again
            scheduler.remove_jobstore("ipt:jobs")
            ticks = len(host_ticks)
            _wait_until(clock, first + timedelta(minutes=7))  # c3's first reminder falls due after detach
            assert len(host_ticks) > ticks
            with lock:
                assert len(emitted) == len(ids)  # nothing more emitted
            later = {r.id for r in pending if r.course == "c3" and r.due <= clock()}
            assert later and detached_at < firsts["c3"]
            assert {r.id for r in wf.reminders(course="c3", status="pending")} >= later
            assert wf.detach() is None
    finally:
        scheduler.shutdown(wait=False)


def test_attach_to_a_host_whose_default_store_pickles_jobs_and_to_a_stopped_scheduler(tmp_path: Path) -> None:
    jobs_db = f"sqlite:///{tmp_path / 'host-jobs.sqlite'}"
    scheduler = BackgroundScheduler(timezone="UTC", jobstores={"default": SQLAlchemyJobStore(url=jobs_db)})
    with Workflow(str(tmp_path / "db.sqlite"), clock=lambda: T_SETUP) as wf:
        attached = wf.attach(scheduler, sinks=[print])  # not started: our jobs wait as pending jobs
        assert attached.jobs == ["ipt:digest", "ipt:sweep"]
        with pytest.raises(InvalidInput, match=r"^scheduler: this workflow is attached already"):
            wf.attach(scheduler, sinks=[print])
        scheduler.start()  # our jobs go to our memory store: nothing of ours is pickled
        try:
            assert sorted(j.id for j in scheduler.get_jobs(jobstore="ipt:jobs")) == ["ipt:digest", "ipt:sweep"]
            assert scheduler.get_jobs(jobstore="default") == []
            detached = wf.detach()
            assert detached is not None and detached.jobs == ["ipt:digest", "ipt:sweep"]
            assert scheduler.get_jobs() == []
            # a second workflow (another clinic database) attaches beside it under its own prefix
            with Workflow(str(tmp_path / "other.sqlite"), clock=lambda: T_SETUP) as other:
                assert other.attach(scheduler, sinks=[print], prefix="other:").jobstore == "other:jobs"
            assert scheduler.get_jobs() == []  # close() detaches
        finally:
            scheduler.shutdown(wait=False)
