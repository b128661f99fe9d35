"""Run the test suite under fixed wall clocks and time zones (issue 8), with libfaketime.

Each run shifts the real clock by a fixed offset (``FAKETIME=+Ns``, taken once before pytest
starts), so the suite and every process it starts (daemons included) share one moved clock
that keeps ticking. The monotonic clock is left alone (faked, timed waits on a condition
never end); ``anytime_site/sitecustomize.py`` works around libfaketime 0.9.10's EINVAL from
``time.sleep`` in every Python process of the run. The runs:

- a weekday at 13:00 UTC (Tuesday 2026-12-01), after the built-in 08:00 digest;
- 23:59:30 UTC on 31 December 2026 (the year changes during the run);
- 00:59:30 UTC on 2027-03-28, 30 s before Europe/London springs forward;
- ``TZ=Pacific/Chatham`` at 2027-04-03 13:59:30 UTC, 30 s before Chatham falls back.

Usage: ``python tests/anytime.py [PYTEST ARGS ...]`` (``make test-anytime``); the default
pytest arguments are ``-q -p no:cacheprovider tests``. Exits 1 if any run failed.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SITE = Path(__file__).resolve().parent / "anytime_site"

RUNS = [
    ("2026-12-01T13:00:00+00:00", "UTC"),
    ("2026-12-31T23:59:30+00:00", "UTC"),
    ("2027-03-28T00:59:30+00:00", "UTC"),
    ("2027-04-03T13:59:30+00:00", "Pacific/Chatham"),
]


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(
        glob.glob("/usr/lib/faketime/libfaketime.so.1")
    )
    if not found:
        sys.exit("error: libfaketime not found: install the Debian package faketime (make test-anytime does)")
    return found[0]


def main() -> int:
    args = sys.argv[1:] or ["-q", "-p", "no:cacheprovider", "tests"]
    lib = libfaketime()
    results = []
    for instant, zone in RUNS:
        offset = round(datetime.fromisoformat(instant).timestamp() - time.time())
        env = {
            **os.environ,
            "LD_PRELOAD": lib,
            "FAKETIME": f"{offset:+d}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH")) if p),
            "TZ": zone,
        }
        print(f"=== wall clock {instant} (FAKETIME={offset:+d}s), TZ={zone}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", *args], env=env, check=False)
        results.append((instant, zone, done.returncode, time.monotonic() - started))
    print("=== summary")
    for instant, zone, code, seconds in results:
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"{instant} TZ={zone:<16} {verdict} in {seconds:.0f} s")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"real clock at the end: {now}; rerun: make test-anytime")
    return 0 if all(code == 0 for _, _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
