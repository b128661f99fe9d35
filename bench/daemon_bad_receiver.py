"""The reminder daemon against bad webhook receivers on 127.0.0.1 (SQLite, a temp database
with N therapist alerts due before a fixed --now; digests off).

(a) Peak resident memory (VmHWM from /proc/PID/status) of `ipt daemon --sink webhook:URL`
    while it delivers the N alerts to a receiver that answers every POST with 200 and a
    400 MB body, beside the same against a receiver that answers 200 with an empty body.
    Goal: unchanged, < 150 MB.
(b) Wall time of `ipt daemon --once --sink webhook:URL` against a receiver that, after the
    request, sends one byte of its status line every 2 s and never finishes; beside it the
    same run against the normal receiver (the process start). Goal: the webhook deadline
    (ipt_workflow.delivery.sinks.WEBHOOK_DEADLINE, 10 s) plus the start.
(c) Seconds from SIGTERM to exit of the long-running daemon whose request is trickled
    (sent 0.5 s before the signal), beside the same for an idle daemon (the exit itself).
    Goal: at most the deadline.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from _common import ROOT, ipt_command, rerun
from ipt_workflow.delivery.sinks import WEBHOOK_DEADLINE
from ipt_workflow.rulebook.files import builtin_rules_dir
from ipt_workflow.testing import LocalServer, seed_due

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HUGE = 400 * 2**20


class Receiver:
    """``normal``: 200, empty body; ``huge``: 200 and HUGE bytes; ``trickle``: a byte every 2 s."""

    def __init__(self, how: str) -> None:
        self.requests = 0
        self.done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                try:
                    if how == "trickle":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while not receiver.done.wait(2):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                        return
                    self.send_response(200)
                    self.send_header("Content-Length", str(HUGE if how == "huge" else 0))
                    self.end_headers()
                    chunk = b"x" * 2**20
                    for _ in range(HUGE // len(chunk) if how == "huge" else 0):
                        self.wfile.write(chunk)
                except OSError:
                    pass  # the daemon hung up

            def log_message(self, *args: object) -> None:
                pass

        self.http = LocalServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.done.set()
        self.http.close()


def prepare(tmp: Path, n: int) -> tuple[Path, Path]:
    """A database with ``n`` alerts due in the hour before NOW, and rules with digests off."""
    rules = tmp / "rules"
    if not rules.exists():
        shutil.copytree(builtin_rules_dir(), rules)
        clinic = rules / "clinic.yaml"
        clinic.write_text(clinic.read_text().replace('cron: "0 8 * * mon-fri"', "cron: null"))
    db = tmp / f"bench-{time.monotonic_ns()}.sqlite"
    seed_due(str(db), n, NOW - timedelta(hours=1), NOW - timedelta(minutes=1), prefix="bad")
    return db, rules


def delivered(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count = conn.execute("SELECT count(*) FROM ipt_reminders WHERE status = 'delivered'").fetchone()[0]
    conn.close()
    return int(count)


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_peak(tmp: Path, how: str, n: int) -> tuple[float, int, float]:
    """(peak RSS MB, alerts delivered, seconds to deliver them) of the long-running daemon."""
    db, rules = prepare(tmp, n)
    receiver = Receiver(how)
    cmd = [*ipt_command(), "--db", str(db), "--rules", str(rules), "daemon", "--now", NOW.isoformat(),
           "--sweep", "0.2", "--sink", f"webhook:{receiver.url}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        t0 = time.perf_counter()
        wait_until(lambda: delivered(db) == n, 120)
        seconds = time.perf_counter() - t0
        return peak_mb(proc.pid), delivered(db), seconds
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        receiver.close()


def once_wall(tmp: Path, how: str, n: int) -> tuple[float, str]:
    """(wall seconds, last stderr line) of `ipt daemon --once` against the ``how`` receiver."""
    db, rules = prepare(tmp, n)
    receiver = Receiver(how)
    cmd = [*ipt_command(), "--db", str(db), "--rules", str(rules), "daemon", "--once", "--now", NOW.isoformat(),
           "--sink", f"webhook:{receiver.url}"]  # fmt: skip
    try:
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
        seconds = time.perf_counter() - t0
    finally:
        receiver.close()
    return seconds, (result.stderr.strip().splitlines() or [""])[-1]


def sigterm_wait(tmp: Path, how: str) -> float:
    """Seconds from SIGTERM to exit of the daemon 0.5 s after its first request to the ``how``
    receiver (trickled: still in flight; normal: the daemon is idle by then)."""
    db, rules = prepare(tmp, 3)
    receiver = Receiver(how)
    cmd = [*ipt_command(), "--db", str(db), "--rules", str(rules), "daemon", "--now", NOW.isoformat(),
           "--sweep", "0.2", "--sink", f"webhook:{receiver.url}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_until(lambda: receiver.requests > 0, 30)
        time.sleep(0.5)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return float("inf")
        return time.perf_counter() - t0
    finally:
        receiver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=20, help="alerts due for (a)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        normal = daemon_peak(tmp, "normal", args.alerts)
        huge = daemon_peak(tmp, "huge", args.alerts)
        print(f"(a) daemon peak RSS (VmHWM), {args.alerts} alerts to a webhook, goal < 150 MB and unchanged:")
        print(f"    receiver answering 200 + 400 MB body: {huge[0]:.1f} MB ({huge[1]} delivered in {huge[2]:.1f} s)")
        print(
            f"    receiver answering 200, empty body:   {normal[0]:.1f} MB ({normal[1]} delivered in {normal[2]:.1f} s)"
        )
        start, start_line = once_wall(tmp, "normal", 3)
        trickle, trickle_line = once_wall(tmp, "trickle", 3)
        print(f"(b) `ipt daemon --once`, 3 alerts due, goal: the {WEBHOOK_DEADLINE:g} s deadline plus the start:")
        print(f"    receiver trickling a byte every 2 s: {trickle:.1f} s  ({trickle_line})")
        print(f"    receiver answering at once:          {start:.1f} s  ({start_line})")
        print(f"(c) long-running daemon, SIGTERM -> exit, goal <= the {WEBHOOK_DEADLINE:g} s deadline:")
        print(f"    while a request is trickled (sent 0.5 s before): {sigterm_wait(tmp, 'trickle'):.1f} s")
        print(f"    idle (its requests answered at once):            {sigterm_wait(tmp, 'normal'):.1f} s")
    print(rerun("daemon_bad_receiver.py [--alerts N]"))


if __name__ == "__main__":
    main()
