"""Two writers to one course never lose an update (SPEC §8, issue 3): real concurrent
connections, each writer with its own engine, on SQLite and on PostgreSQL.

The optimistic check is ``UPDATE ... WHERE version = <the version read>``. To make the race
certain rather than likely, both writers read the course, wait for each other at a barrier,
and only then write.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

import ipt_workflow
from ipt_workflow import ConflictError, Course, Workflow
from tests.e2e.conftest import clean_env, ipt_command

from .test_store import Clock, assert_pending_matches_plan, new_course, rows, same_course, snapshot

NOW = datetime(2026, 3, 2, 10, 50, tzinfo=UTC)
LATER = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)  # sessions 2 to 5 have started: each of 4 misses is true
TIMEOUT = 30


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    """Run each job in its own thread; returns each one's result or the exception it raised."""
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a writer hung"
    return results


@pytest.fixture
def writers(db_url: str) -> Iterator[tuple[Workflow, Workflow]]:
    """Two independent clients of one database (two engines, two connection pools), and a
    course ``crs-1`` at version 2 (created, one session held)."""
    clock = Clock(NOW)
    with Workflow(db_url, clock=clock) as a, Workflow(db_url, clock=clock) as b:
        assert a.store.engine is not b.store.engine
        new_course(a)
        a.apply("crs-1", "hold_session")
        yield a, b


EVENTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "a": ("record_measure", {"instrument": "phq9", "score": 17, "item9": 2}),  # a measurement and a safety alert
    "b": ("miss_session", None),  # a missed session and a shifted plan
}


def prepared_write(wf: Workflow, event: str, data: dict[str, Any] | None, barrier: threading.Barrier) -> Course:
    """Read the course, apply ``event`` in memory, wait for the other writer, then save."""
    before = wf.store.load("crs-1")
    protocol = wf.rules.protocol(before.protocol)
    after, effects = ipt_workflow.apply(before, event, LATER, protocol, wf.rules.clinic, data)
    plan = ipt_workflow.plan(after, protocol, wf.rules.clinic)
    barrier.wait(TIMEOUT)  # both have read version N
    return wf.store.save(before, after, plan, effects, NOW)


def test_of_two_concurrent_writers_exactly_one_wins(writers: tuple[Workflow, Workflow], raw_engine: Engine) -> None:
    a, b = writers
    for _ in range(4):
        version = a.course("crs-1").version
        history = rows(raw_engine, "ipt_history", "crs-1")
        barrier = threading.Barrier(2)
        results = run_together(
            lambda barrier=barrier: prepared_write(a, *EVENTS["a"], barrier),
            lambda barrier=barrier: prepared_write(b, *EVENTS["b"], barrier),
        )
        won = [i for i, r in enumerate(results) if isinstance(r, Course)]
        lost = [r for r in results if isinstance(r, ConflictError)]
        assert len(won) == 1 and len(lost) == 1, results
        assert (lost[0].expected, lost[0].found) == (version, version + 1)
        winner = results[won[0]]
        event = EVENTS["ab"[won[0]]][0]

        assert winner.version == version + 1 == a.course("crs-1").version
        after = rows(raw_engine, "ipt_history", "crs-1")
        assert after[: len(history)] == history
        assert [h["event"] for h in after[len(history) :]] == [event]
        # nothing of the loser's event was written
        measures = len(rows(raw_engine, "ipt_measurements", "crs-1"))
        missed = [s for s in rows(raw_engine, "ipt_sessions", "crs-1") if s["status"] == "missed"]
        assert measures == sum(h["event"] == "record_measure" for h in after)
        assert len(missed) == sum(h["event"] == "miss_session" for h in after)
        assert same_course(b.course("crs-1"), winner)
        assert_pending_matches_plan(a, raw_engine, winner)


@pytest.mark.parametrize("retries", [0, 3])
def test_two_writers_through_the_facade(writers: tuple[Workflow, Workflow], raw_engine: Engine, retries: int) -> None:
    """``Workflow.apply`` with both writers forced to read before either writes: without
    retries one gets ConflictError and nothing of it is written; with retries both land."""
    a, b = writers
    version = a.course("crs-1").version
    history = rows(raw_engine, "ipt_history", "crs-1")
    barrier = threading.Barrier(2)
    loads: list[int] = []

    for wf in (a, b):
        first = [True]

        def first_load_waits(
            course_id: str, load: Callable[[str], Course] = wf.store.load, first: list[bool] = first
        ) -> Course:
            course = load(course_id)
            loads.append(course.version)
            if first[0]:  # each writer's first read: wait until the other has read too
                first[0] = False
                barrier.wait(TIMEOUT)
            return course

        wf.store.load = first_load_waits  # type: ignore[method-assign]

    a.clock = b.clock = lambda: datetime(2026, 3, 16, 10, 50, tzinfo=UTC)  # sessions 2 and 3 have started
    results = run_together(
        lambda: a.apply("crs-1", "hold_session", retries=retries),
        lambda: b.apply("crs-1", "hold_session", retries=retries),
    )
    loads = list(loads)  # what the writers read (later reads below are the test's own)
    assert loads[:2] == [version, version]
    held = [s["number"] for s in rows(raw_engine, "ipt_sessions", "crs-1") if s["status"] == "held"]
    after = rows(raw_engine, "ipt_history", "crs-1")
    assert after[: len(history)] == history
    if retries == 0:
        assert sorted(type(r).__name__ for r in results) == ["ConflictError", "Course"], results
        assert [h["event"] for h in after[len(history) :]] == ["hold_session"]
        assert a.course("crs-1").version == version + 1
        assert held == [1, 2]
    else:
        assert all(isinstance(r, Course) for r in results), results
        assert sorted(r.version for r in results) == [version + 1, version + 2]
        assert loads[2:] == [version + 1]  # the loser read again, once
        assert [h["event"] for h in after[len(history) :]] == ["hold_session", "hold_session"]
        assert a.course("crs-1").version == version + 2
        assert held == [1, 2, 3]  # both updates, none lost
    assert_pending_matches_plan(a, raw_engine, a.course("crs-1"))


def test_many_writers_with_retries_lose_nothing(db_url: str, raw_engine: Engine) -> None:
    """Four clients, each recording five PHQ-9 scores on one course as fast as they can."""
    clock = Clock(NOW)
    per_writer, count = 5, 4
    clients = [Workflow(db_url, clock=clock) for _ in range(count)]
    try:
        new_course(clients[0])
        start = snapshot(raw_engine)

        def writer(k: int) -> list[int]:
            versions = []
            for j in range(per_writer):
                data = {"instrument": "phq9", "score": 5 * k + j, "item9": 0}
                versions.append(clients[k].apply("crs-1", "record_measure", data, retries=100).version)
            return versions

        results = run_together(*(lambda k=k: writer(k) for k in range(count)))
    finally:
        for wf in clients:
            wf.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    total = per_writer * count
    assert sorted(v for r in results for v in r) == list(range(2, 2 + total))  # every version given out once
    measures = rows(raw_engine, "ipt_measurements", "crs-1")
    assert [m["seq"] for m in measures] == list(range(total))
    assert sorted(m["score"] for m in measures) == sorted(5 * k + j for k in range(count) for j in range(per_writer))
    history = rows(raw_engine, "ipt_history", "crs-1")
    assert len(history) == len(start["ipt_history"]) + total
    assert rows(raw_engine, "ipt_courses")[0]["version"] == 1 + total
    for k in range(count):  # each writer's own scores in the order it sent them
        mine = [m["score"] for m in measures if m["score"] // 5 == k]
        assert mine == sorted(mine)


# ---------------------------------------------------------------- the command line


PAIRS = 10
NOW_ISO = "2029-06-01T12:00:00Z"  # every monthly session of the extended course has started


def test_two_cli_processes_never_lose_an_update(tmp_path: Path) -> None:
    """``ipt --db FILE course event`` twice at once, ten times over: every run either lands or
    exits 1 with the conflict line; the history holds exactly the runs that landed."""
    db_file = str(tmp_path / "clinic.sqlite")
    with Workflow(db_file, clock=Clock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))) as wf:
        new_course(wf, "crs-m", protocol="ipt-m")
        wf.apply("crs-m", "extend", {"sessions": 2 * PAIRS})  # monthly, room for every hold
        initial = len(wf.course("crs-m").history)
    command = [*ipt_command(), "--db", db_file, "course", "event", "crs-m", "hold_session", "--now", NOW_ISO]
    env = clean_env(tmp_path)
    successes = conflicts = 0
    for _ in range(PAIRS):
        landed = 0
        procs = [
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert "Traceback" not in err, err
            if proc.returncode == 0:
                landed += 1
                assert out.startswith("crs-m: intake -> intake (version "), out
            else:
                conflicts += 1
                assert proc.returncode == 1, (proc.returncode, out, err)
                [line] = err.splitlines()
                assert line.startswith("error: course 'crs-m' is at version") and "changed" in line, line
                assert out == ""
        assert landed >= 1  # of two writers one always wins
        successes += landed
    assert successes + conflicts == 2 * PAIRS
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        history = rows(engine, "ipt_history", "crs-m")
        assert len(history) == initial + successes
        assert [h["seq"] for h in history] == list(range(len(history)))
        assert rows(engine, "ipt_courses")[0]["version"] == initial + successes
        held = [s["number"] for s in rows(engine, "ipt_sessions", "crs-m") if s["status"] == "held"]
        assert held == list(range(1, successes + 1))
    finally:
        engine.dispose()
