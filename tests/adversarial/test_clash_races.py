"""Two ``ipt course create`` processes booking one therapist at one hour at once (SPEC §9):
exactly one succeeds, the other is refused with the clash and writes nothing; 50 pairs, on
SQLite and on PostgreSQL (``external_service``).

As in test_cli_store_races.py, a holder takes the write lock first so that every racer gets
past its own reads and waits (SQLite's busy handler; on PostgreSQL a row or advisory lock seen
in ``pg_locks``); then the holder lets go and the racers run into each other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text

from ..e2e.conftest import error_line
from ..integration.conftest import db_url, postgres_unreachable, postgres_url, sqlalchemy_url  # noqa: F401
from .test_cli_store_races import LONG_WAIT, finish, start, write_lock_held

PAIRS = 50
AT_ONCE = 5  # pairs racing in one round (different therapists), so 10 processes wait together


def booking_rows(db: str) -> dict[str, int]:
    engine = create_engine(sqlalchemy_url(db))
    try:
        with engine.connect() as conn:
            courses = conn.execute(text("SELECT therapist, count(*) FROM ipt_courses GROUP BY therapist"))
            out = {str(therapist): int(n) for therapist, n in courses}
            # every stored course has all its reminders: the same plan, so the same count
            per_course = conn.execute(text("SELECT count(*) FROM ipt_reminders GROUP BY course_id")).scalars().all()
            out["reminder counts"] = len(set(per_course)) if len(per_course) == sum(out.values()) else -1
            return out
    finally:
        engine.dispose()


def test_two_bookings_of_one_therapist_and_hour_never_both_succeed(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    def create(therapist: str, client: str) -> subprocess.Popen[str]:
        return start(db_url, "course", "create", "--client", client, "--therapist", therapist, "--start",
                     "2027-01-04", "--time", "10:00", "--tz", "Europe/London", "--now", "2026-12-01T09:00",
                     cwd=tmp_path, env=LONG_WAIT)  # fmt: skip

    seed = finish(create("T-seed", "CL-seed"))  # the database and its schema exist before the races
    assert seed.returncode == 0, seed.stderr
    outcomes: list[tuple[int, int]] = []
    for first in range(0, PAIRS, AT_ONCE):
        procs: list[subprocess.Popen[str]] = []
        with write_lock_held(db_url, lambda procs=procs: [p.pid for p in procs]):
            for pair in range(first, first + AT_ONCE):
                procs += [create(f"T-{pair:02d}", f"CL-{pair}-{side}") for side in "ab"]
        results = [finish(p) for p in procs]
        for a, b in zip(results[::2], results[1::2], strict=True):
            won, lost = (a, b) if a.returncode == 0 else (b, a)
            assert won.returncode == 0 and won.stdout.startswith("crs_"), won.stderr
            line = error_line(lost)
            booked = f"error: therapist {line.split()[2]} is booked Mon 2027-01-04 10:00–10:50 GMT (course "
            assert line.startswith(booked)
            assert line.endswith(f"{won.stdout.strip()}, session 1)")
            outcomes.append((a.returncode, b.returncode))
    assert len(outcomes) == PAIRS
    stored = booking_rows(db_url)
    assert stored == {"T-seed": 1, **{f"T-{pair:02d}": 1 for pair in range(PAIRS)}, "reminder counts": 1}
