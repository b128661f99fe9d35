"""Emission lag of the long-running reminder daemon: N reminders (default 10,000) due evenly over
one minute starting ~10 s from now (real clock, UTC) in an SQLite file, drained by
`ipt --db FILE --rules RULES daemon --sink file:OUT --sweep 1` until every line is in OUT, then
SIGTERM. RULES is the built-in rules with digests off (``ipt_workflow.testing.clinic_rules``):
on the real clock a weekday's 08:00 digest would otherwise add a line nobody seeded.
Lag is measured against each reminder's exact due instant (known from the seeding; the
output's `due` field has whole seconds only), two ways: the daemon's own `emitted_at` stamp,
and the moment the bench saw the line appear in OUT (polled every 10 ms). Also: the daemon's
CPU time while waiting and while draining, and how it exits on SIGTERM.
Goal: p99 < 1 s."""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import ROOT, cpu_seconds, ipt_command, rerun
from ipt_workflow.testing import clinic_rules, seed_due

IDLE = timedelta(seconds=3)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figures(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"{label} p50 {pct(ms, 50):6.0f} ms, p99 {pct(ms, 99):6.0f} ms, max {max(ms):6.0f} ms, "
            f"min {min(ms):6.0f} ms")  # fmt: skip


class Tail:
    """Complete lines appended to a file, each with the wall time the bench first saw it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.lines: list[tuple[bytes, float]] = []

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        seen = time.time()
        if not data:
            return
        self.offset += len(data)
        chunks = (self.partial + data).split(b"\n")
        self.partial = chunks.pop()
        self.lines.extend((line, seen) for line in chunks if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which they fall due")
    parser.add_argument("--lead", type=float, default=10.0, help="seconds from now to the first due instant")
    parser.add_argument("--sweep", type=float, default=1.0, help="the daemon's --sweep")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for all lines")
    parser.add_argument("--quick", action="store_true", help="2,000 reminders over 20 s")
    args = parser.parse_args()
    n, spread = (2_000, 20.0) if args.quick else (args.reminders, args.spread)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        db, out, log = tmp / "ipt.sqlite", tmp / "out.jsonl", tmp / "daemon.log"
        first = datetime.now(UTC) + timedelta(seconds=args.lead)
        last = first + timedelta(seconds=spread)
        ids = seed_due(str(db), n, first, last)
        step = (last - first) / max(n - 1, 1)
        due = {rid: first + step * i for i, rid in enumerate(ids)}
        print(f"seeded {n:,} reminders due {first:%H:%M:%S.%f}..{last:%H:%M:%S.%f} UTC "
              f"(one every {step.total_seconds() * 1000:.1f} ms); first due in "
              f"{(first - datetime.now(UTC)).total_seconds():.1f} s")  # fmt: skip
        rules = clinic_rules(tmp / "rules")
        cmd = [*ipt_command(), "--db", str(db), "--rules", str(rules), "daemon", "--sink", f"file:{out}",
               "--sweep", str(args.sweep)]  # fmt: skip
        tail = Tail(out)
        with log.open("wb") as log_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, cwd=ROOT)
            try:
                cpu_idle: float | None = None  # 3 s before the first due instant: started, waiting
                cpu_at_first: float | None = None
                deadline = time.monotonic() + args.timeout
                while len(tail.lines) < n and time.monotonic() < deadline and proc.poll() is None:
                    now = datetime.now(UTC)
                    if cpu_idle is None and now >= first - IDLE:
                        cpu_idle = cpu_seconds(proc.pid)
                    if cpu_at_first is None and now >= first:
                        cpu_at_first = cpu_seconds(proc.pid)
                    time.sleep(0.01)
                    tail.poll()
                cpu_at_end = cpu_seconds(proc.pid) if proc.poll() is None else math.nan
                drained_at = datetime.now(UTC)
            finally:
                t0 = time.perf_counter()
                proc.send_signal(signal.SIGTERM)
                try:
                    code: int | None = proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    code = None
                stop_seconds = time.perf_counter() - t0
        tail.poll()
        events = [(json.loads(line), seen) for line, seen in tail.lines]
        stamped = [datetime.fromisoformat(e["emitted_at"]) for e, _ in events]
        lag_stamp = [(s - due[e["id"]]).total_seconds() for (e, _), s in zip(events, stamped, strict=True)]
        lag_seen = [seen - due[e["id"]].timestamp() for e, seen in events]
        lag_field = [(s - datetime.fromisoformat(e["due"])).total_seconds()
                     for (e, _), s in zip(events, stamped, strict=True)]  # fmt: skip
        whole = sum(1 for s in stamped if s.microsecond == 0)
        distinct = len({e["id"] for e, _ in events})
        print(f"lines: {len(events):,} of {n:,} ({distinct:,} distinct ids) after "
              f"{(drained_at - first).total_seconds():.1f} s from the first due instant")  # fmt: skip
        if events:
            print(figures("lag emitted_at - exact due:  ", lag_stamp) + "  (goal p99 < 1 s)")
            print(figures("lag seen in file - exact due:", lag_seen) + "  (goal p99 < 1 s)")
            print(figures("lag emitted_at - due field:  ", lag_field) + "  (the output's due field has whole seconds)")
            print(f"emitted_at resolution: {whole:,} of {len(stamped):,} stamps are whole seconds; "
                  f"{len(set(stamped)):,} distinct stamps")  # fmt: skip
        window = (drained_at - first).total_seconds()
        if cpu_idle is not None and cpu_at_first is not None:
            waiting = cpu_at_first - cpu_idle
            print(f"daemon CPU: {cpu_idle:.2f} s to start; {waiting:.2f} s over the last "
                  f"{IDLE.total_seconds():.0f} s of waiting ({waiting / IDLE.total_seconds():.0%} of one core); "
                  f"{cpu_at_end - cpu_at_first:.1f} s over the {window:.1f} s drain "
                  f"({(cpu_at_end - cpu_at_first) / window:.0%} of one core)")  # fmt: skip
        text = log.read_text(errors="replace")
        wakes = text.count("dispatched delivered=")
        stop = f"exit {code} in {stop_seconds:.2f} s" if code is not None else "NO EXIT within 30 s (killed)"
        print(f"daemon: {wakes:,} dispatches that delivered something (log lines); SIGTERM -> {stop}")
        errors = [line for line in text.splitlines() if "Traceback" in line or "ERROR" in line or "WARNING" in line]
        if errors:
            busy = sum(1 for line in errors if "maximum number of running instances" in line)
            print(f"daemon log: {len(errors)} warning/error lines ({busy} 'skipped: maximum number of running "
                  f"instances reached'), first: {errors[0][:300]}")  # fmt: skip
    print(rerun("daemon_lag.py [--reminders N] [--spread S] [--lead S] [--sweep S] [--quick]"))


if __name__ == "__main__":
    main()
