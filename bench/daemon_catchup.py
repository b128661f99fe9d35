"""Catch-up throughput of the reminder daemon after an hour of downtime: N pending reminders
(default 20,000) due evenly over the hour before a fixed --now, drained by
`ipt daemon --once --now <that instant> --sink file:OUT`. Measured: the wall time of the
process (startup included), the same less the startup of a run with nothing due, and the
in-process rate of `dispatch_due()` with a FileSink; on SQLite (a temp file) and on
PostgreSQL with 1 replica and with 3 `--once` replicas started together on one database
(each with its own file sink; the union of ids must equal the seeded ids, without
duplicates). Goal: >= 20,000 reminders/s on SQLite."""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import secrets
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from _common import ROOT, ipt_command, rerun
from ipt_workflow.bootstrap import store_for
from ipt_workflow.core.wallclock import parse_instant
from ipt_workflow.delivery.dispatch import dispatch_due
from ipt_workflow.delivery.sinks import FileSink
from ipt_workflow.testing import seed_due

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def seed(url: str, n: int, now: datetime) -> list[str]:
    """N pending reminders due evenly over the hour before ``now``; their ids."""
    return seed_due(url, n, now - timedelta(hours=1), now)


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of an SQLite database (WAL included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def ids_in(files: list[Path]) -> tuple[Counter[str], int]:
    """(how many times each reminder id was written, how many digest lines) across ``files``."""
    seen: Counter[str] = Counter()
    digests = 0
    for path in files:
        if path.exists():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        event = json.loads(line)
                        if event.get("type") == "digest":  # the clinic's digest cron, not seeded
                            digests += 1
                        else:
                            seen[event["id"]] += 1
    return seen, digests


def check(files: list[Path], seeded: list[str]) -> str:
    """One line saying whether the files hold exactly the seeded ids, each once."""
    seen, digests = ids_in(files)
    dups = sum(1 for c in seen.values() if c > 1)
    missing = len(set(seeded) - seen.keys())
    extra = len(seen.keys() - set(seeded))
    ok = dups == 0 and missing == 0 and extra == 0
    also = f" (and {digests} digest lines)" if digests else ""
    return (f"check {'OK' if ok else 'FAILED'}: {sum(seen.values()):,} reminder lines{also}, {len(seen):,} "
            f"distinct ids, {dups} duplicated, {missing} missing, {extra} unexpected")  # fmt: skip


def once_cmd(db: str, now: datetime, out: Path) -> list[str]:
    return [*ipt_command(), "--db", db, "daemon", "--once", "--now", now.isoformat(), "--sink", f"file:{out}"]


def run_once(db: str, now: datetime, out: Path) -> tuple[float, str]:
    """(wall seconds, the stderr summary) of one `ipt daemon --once`."""
    t0 = time.perf_counter()
    done = subprocess.run(once_cmd(db, now, out), check=True, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - t0, done.stderr.strip().splitlines()[-1]


def startup_seconds(db: str, now: datetime, tmp: Path, runs: int = 3) -> float:
    """Median wall time of `ipt daemon --once` on the same database with nothing due yet."""
    early = now - timedelta(days=1)
    out = tmp / "startup.jsonl"
    run_once(db, early, out)  # warm-up
    return statistics.median(run_once(db, early, out)[0] for _ in range(runs))


def in_process(db: str, now: datetime, out: Path, profile: bool = False) -> tuple[float, int]:
    """(seconds, delivered) of dispatch_due() alone, the store already open."""
    store = store_for(db)
    store.ensure_schema()
    sink = FileSink(out)
    profiler = cProfile.Profile() if profile else None
    try:
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        result = dispatch_due(store, now, [sink])
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - t0
    finally:
        sink.close()
        store.close()
    if profiler:
        print("  profile of the in-process drain (top 15 by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return seconds, result.delivered


def replicas(db: str, now: datetime, outs: list[Path]) -> tuple[float, list[str]]:
    """(wall seconds from the first start to the last exit, each stderr summary) of
    ``len(outs)`` `--once` processes started together."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(once_cmd(db, now, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for out in outs]  # fmt: skip
    summaries = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"replica exited {p.returncode}: {err.strip()}")
        summaries.append(err.strip().splitlines()[-1])
    return time.perf_counter() - t0, summaries


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} reminders/s ({seconds:.2f} s)"


@contextmanager
def pg_schema() -> Iterator[str | None]:
    """The URL of a fresh schema in the local `test` database (dropped afterwards), or None
    when PostgreSQL is not reachable."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"ipt_bench_{secrets.token_hex(6)}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
    except Exception as exc:
        print(f"postgresql: skipped ({exc.__class__.__name__}: {str(exc).splitlines()[0]})")
        yield None
        return
    try:
        url = make_url(PG_ADMIN)
        yield url.set(query={**url.query, "options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def sqlite_runs(n: int, now: datetime, tmp: Path, profile: bool) -> None:
    template = tmp / "seeded.sqlite"
    t0 = time.perf_counter()
    seeded = seed(str(template), n, now)
    print(f"seeded {n:,} reminders due {now - timedelta(hours=1):%H:%M:%S}..{now:%H:%M:%S} on SQLite in "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    db = tmp / "cli.sqlite"
    copy_sqlite(template, db)
    startup = startup_seconds(str(db), now, tmp)
    out = tmp / "sqlite-cli.jsonl"
    wall, summary = run_once(str(db), now, out)
    print(f"sqlite  ipt daemon --once:          {rate(n, wall)} wall, startup included; {summary}")
    print(f"sqlite  less startup ({startup:.2f} s):     {rate(n, wall - startup)}")
    print(f"        {check([out], seeded)}")
    db = tmp / "inproc.sqlite"
    copy_sqlite(template, db)
    out = tmp / "sqlite-inproc.jsonl"
    seconds, delivered = in_process(str(db), now, out, profile)
    print(f"sqlite  dispatch_due() in process:  {rate(delivered, seconds)} (goal >= 20,000 reminders/s)")
    print(f"        {check([out], seeded)}")


def postgres_runs(n: int, now: datetime, tmp: Path, count: int) -> None:
    with pg_schema() as url:
        if url is None:
            return
        t0 = time.perf_counter()
        seeded = seed(url, n, now)
        print(f"seeded {n:,} reminders on PostgreSQL in {time.perf_counter() - t0:.1f} s")
        startup = startup_seconds(url, now, tmp)
        out = tmp / "pg-cli.jsonl"
        wall, summary = run_once(url, now, out)
        print(f"pg      ipt daemon --once:          {rate(n, wall)} wall, startup included; {summary}")
        print(f"pg      less startup ({startup:.2f} s):     {rate(n, wall - startup)}")
        print(f"        {check([out], seeded)}")
    with pg_schema() as url:
        if url is None:
            return
        seeded = seed(url, n, now)
        out = tmp / "pg-inproc.jsonl"
        seconds, delivered = in_process(url, now, out)
        print(f"pg      dispatch_due() in process:  {rate(delivered, seconds)}")
        print(f"        {check([out], seeded)}")
    with pg_schema() as url:
        if url is None:
            return
        seeded = seed(url, n, now)
        outs = [tmp / f"pg-replica-{i}.jsonl" for i in range(count)]
        wall, summaries = replicas(url, now, outs)
        print(f"pg      {count} replicas --once together:  {rate(n, wall)} combined wall, startup included; "
              f"{' | '.join(summaries)}")  # fmt: skip
        print(f"        {check(outs, seeded)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reminders", type=int, default=20_000, help="pending reminders due over the last hour")
    parser.add_argument("--now", default="2026-03-02T12:00:00+00:00", help="the instant the daemon catches up to")
    parser.add_argument("--replicas", type=int, default=3, help="--once processes started together on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="2,000 reminders")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process SQLite drain")
    args = parser.parse_args()
    n = 2_000 if args.quick else args.reminders
    now = parse_instant(args.now, None, "--now")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sqlite_runs(n, now, tmp, args.profile)
        if not args.no_postgres:
            postgres_runs(n, now, tmp, args.replicas)
    print(rerun("daemon_catchup.py [--reminders N | --quick] [--replicas K] [--no-postgres] [--profile]"))


if __name__ == "__main__":
    main()
