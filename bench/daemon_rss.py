"""Resident memory of the long-running reminder daemon with 100,000 ipt-16 courses stored in SQLite
(imported with `ipt import` from the CSV of bench/import_courses.py; cached in /tmp and rebuilt
only when missing or with --rebuild; their sessions run from January 2026 to spring 2027). On
a copy of it, everything due more than an hour before now is marked delivered (a daemon that
was down for an hour) and 5,000 reminders are added due evenly from an hour ago to the end of
the run (the same load whatever the time of day); then `ipt --db COPY daemon --sink file:OUT`
runs on the clock for ~15 s: it drains the hour, then emits as they fall due. Measured:
VmRSS sampled every 0.25 s, and VmRSS / VmHWM (peak) from /proc/PID/status just before
SIGTERM; the daemon's CPU time and whether it exits on SIGTERM; and, for scale, the same
daemon on an empty database. --now ISO pins the daemon's clock instead (APScheduler still
wakes on the real clock, so a pinned instant in the past re-fires the `next` wake-up in a
loop). Goal: < 150 MB."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from import_courses import write_csv

from _common import ROOT, cpu_seconds, ipt_command, rerun
from ipt_workflow.testing import clinic_rules, seed_due

STOP_WAIT = 10.0  # seconds to wait for an exit after SIGTERM, then SIGKILL


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM ... of ``pid`` in MB (from /proc/PID/status)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm") and line.endswith("kB"):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) / 1024
    return out


def build(cache: Path, courses: int) -> None:
    """Import ``courses`` courses into ``cache`` (a single file: rollback journal, no WAL)."""
    building = cache.with_name(cache.name + ".building")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "courses.csv"
        write_csv(csv_path, courses)
        t0 = time.perf_counter()
        subprocess.run([*ipt_command(), "--db", str(building), "import", str(csv_path), "--now", "2026-01-01T00:00"],
                       check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    with sqlite3.connect(building) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL into the file
    conn.close()
    os.replace(building, cache)
    print(f"built {cache}: {courses:,} courses imported in {time.perf_counter() - t0:.1f} s")


def prepare(cache: Path, work: Path, now: datetime, backlog: timedelta, seed: int, seconds: float) -> str:
    """Copy the cache to ``work``, mark delivered what fell due before ``now - backlog``, and
    seed ``seed`` more reminders due evenly from ``now - backlog`` to the end of the run (so
    the same load is due whatever the time of day); a line describing the result."""
    shutil.copyfile(cache, work)
    cutoff = str((now - backlog).astimezone(UTC).replace(tzinfo=None))
    with sqlite3.connect(work) as conn:
        conn.execute("UPDATE ipt_reminders SET status = 'delivered', delivered_at = due "
                     "WHERE status = 'pending' AND due < ?", (cutoff,))  # fmt: skip
    conn.close()
    if seed:
        seed_due(str(work), seed, now - backlog, now + timedelta(seconds=seconds), prefix="rss")
    upto = str(now.astimezone(UTC).replace(tzinfo=None))
    with sqlite3.connect(work) as conn:
        courses = conn.execute("SELECT count(*) FROM ipt_courses").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM ipt_reminders WHERE status = 'pending'").fetchone()[0]
        due = conn.execute("SELECT count(*) FROM ipt_reminders WHERE status = 'pending' AND due <= ?",
                           (upto,)).fetchone()[0]  # fmt: skip
    conn.close()
    return (f"{courses:,} courses ({cache.stat().st_size / 2**20:,.0f} MB file); {pending:,} reminders pending, "
            f"{due:,} due by {now:%Y-%m-%d %H:%M:%S} UTC (the plans' last {backlog.total_seconds() / 60:.0f} min "
            f"+ {seed:,} seeded from then to the end of the run)")  # fmt: skip


@dataclass
class Run:
    samples: list[tuple[float, float]]  # (seconds since start, VmRSS MB)
    final: dict[str, float]  # /proc/PID/status just before SIGTERM
    cpu: float
    code: int | None  # None: no exit within STOP_WAIT of SIGTERM
    lines: int
    log: str


def run_daemon(db: Path, tmp: Path, seconds: float, now: datetime | None) -> Run:
    """Run `ipt --db DB --rules RULES daemon --sink file:OUT` for ``seconds``, sampling its memory,
    then SIGTERM. RULES has digests off, so the figures do not depend on the hour or weekday."""
    out, log = tmp / f"{db.stem}.jsonl", tmp / f"{db.stem}.log"
    rules = tmp / f"{db.stem}-rules"
    if not rules.exists():
        clinic_rules(rules)
    cmd = [*ipt_command(), "--db", str(db), "--rules", str(rules), "daemon", "--sink", f"file:{out}"]
    if now is not None:
        cmd += ["--now", now.isoformat()]
    samples: list[tuple[float, float]] = []
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, cwd=ROOT)
        t0 = time.perf_counter()
        final: dict[str, float] = {}
        cpu = math.nan
        try:
            while time.perf_counter() - t0 < seconds and proc.poll() is None:
                samples.append((time.perf_counter() - t0, status_mb(proc.pid).get("VmRSS", 0.0)))
                time.sleep(0.25)
            if proc.poll() is None:
                final, cpu = status_mb(proc.pid), cpu_seconds(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
    with out.open("rb") if out.exists() else open(os.devnull, "rb") as f:
        lines = sum(1 for _ in f)
    return Run(samples, final, cpu, code, lines, log.read_text(errors="replace"))


def describe(run: Run, seconds: float) -> list[str]:
    nan = math.nan
    peak = max((rss for _, rss in run.samples), default=nan)
    marks = [s for s in run.samples if any(abs(s[0] - m) < 0.13 for m in (1, 2, 5, 10, 15, 30))]
    stop = f"exit {run.code}" if run.code is not None else f"NO EXIT within {STOP_WAIT:.0f} s (killed)"
    out = [
        "  RSS over time: " + ", ".join(f"{t:.0f} s {rss:.0f} MB" for t, rss in marks),
        f"  at {seconds:.0f} s: VmRSS {run.final.get('VmRSS', nan):.1f} MB, VmHWM (peak) "
        f"{run.final.get('VmHWM', nan):.1f} MB; highest sampled {peak:.1f} MB",
        f"  emitted {run.lines:,} lines; {run.cpu:.1f} s CPU in {seconds:.0f} s; SIGTERM -> {stop}",
    ]
    if not run.final:
        out.append(f"  daemon exited early; log tail: {run.log[-1000:]}")
    problems = [
        line for line in run.log.splitlines() if "Traceback" in line or " ERROR " in line or " WARNING " in line
    ]
    if problems:
        out.append(f"  log: {len(problems)} warning/error lines, first: {problems[0][:300]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100_000)
    parser.add_argument("--cache", help="the SQLite file to keep the courses in (default /tmp/ipt-bench-N.sqlite)")
    parser.add_argument("--rebuild", action="store_true", help="import the courses again")
    parser.add_argument("--now", help="pin the daemon's clock (--now ISO) instead of the real clock")
    parser.add_argument("--backlog", type=float, default=60.0, help="minutes of reminders left pending before now")
    parser.add_argument("--seed", type=int, default=5_000, help="reminders added, due from now - backlog to the end")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the daemon runs")
    parser.add_argument("--quick", action="store_true", help="5,000 courses, 8 s")
    args = parser.parse_args()
    courses, seconds = (5_000, 8.0) if args.quick else (args.courses, args.seconds)
    label = f"{courses // 1000}k" if courses % 1000 == 0 else str(courses)
    cache = Path(args.cache or f"/tmp/ipt-bench-{label}.sqlite")
    if args.rebuild or not cache.exists():
        build(cache, courses)
    pinned = datetime.fromisoformat(args.now).astimezone(UTC) if args.now else None
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        empty = tmp / "empty.sqlite"
        baseline = run_daemon(empty, tmp, 3.0, pinned)
        print(f"empty database, 3 s: VmRSS {baseline.final.get('VmRSS', math.nan):.1f} MB, VmHWM "
              f"{baseline.final.get('VmHWM', math.nan):.1f} MB")  # fmt: skip
        work = tmp / "ipt.sqlite"
        now = pinned or datetime.now(UTC)
        print("stored: " + prepare(cache, work, now, timedelta(minutes=args.backlog), args.seed, seconds))
        run = run_daemon(work, tmp, seconds, pinned)
        print(f"daemon on {courses:,} courses ({'--now ' + now.isoformat() if pinned else 'real clock'}), "
              f"goal < 150 MB:")  # fmt: skip
        print("\n".join(describe(run, seconds)))
    print(rerun("daemon_rss.py [--courses N | --quick] [--rebuild] [--now ISO] [--seed N] [--seconds S]"))


if __name__ == "__main__":
    main()
