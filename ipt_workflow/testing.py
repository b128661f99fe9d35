"""Load-test helpers for embedding engineers, the test suite and ``bench/``: fill a database
with many reminders due in a given window, to drain with the daemon; copy the rules with the
settings that depend on the hour or the date turned off, for a daemon on the real clock.

The seeded reminders are therapist ``follow_up`` alerts (no session, so the late policy never
skips them) belonging to a few real courses created through the normal path; those courses
start more than a year after the window, so their own reminders are never due in it.
"""

from __future__ import annotations

import math
import shutil
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import insert

from .rulebook.files import builtin_rules_dir
from .storage import schema as t
from .workflow import Workflow

SEED_COURSE_AFTER = timedelta(days=400)  # the seed courses start this long after the window


def seed_due(url: str, n: int, first: datetime, last: datetime, per_course: int = 1000, prefix: str = "s") -> list[str]:
    """Add ``n`` pending reminders due evenly from ``first`` to ``last`` (aware instants) to the
    database at ``url``; returns their ids in due order."""
    begins = (max(first, last).astimezone(UTC) + SEED_COURSE_AFTER).date()
    clock = datetime.combine(begins - timedelta(days=30), datetime.min.time(), UTC)
    ids: list[str] = []
    with Workflow(url, clock=lambda: clock) as wf:
        step = (last - first) / max(n - 1, 1)
        rows = []
        for c in range(math.ceil(n / per_course)):
            course_id = f"seed-{prefix}-{c}"
            wf.create_course(client=f"LOAD-{c}", start=begins.isoformat(), time="10:00", tz="UTC", course_id=course_id)
            for i in range(c * per_course, min(n, (c + 1) * per_course)):
                rid = f"rem_{prefix}{i:08d}"
                ids.append(rid)
                rows.append({
                    "course_id": course_id, "id": rid, "kind": "follow_up", "audience": "therapist",
                    "due": (first + step * i).astimezone(UTC), "session": None, "status": "pending",
                    "rule": "seed", "attempts": 0,
                })  # fmt: skip
        with wf.store.engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(t.reminders), rows[start : start + 5000])
    return ids


def clinic_rules(dest: Path, leads: str | None = None, calendar: bool = True) -> Path:
    """Copy the built-in rules to ``dest`` (a new folder) with therapist digests off
    (``digest: {cron: null}``: the built-in cron fires at 08:00 on weekdays), with
    ``reminder_leads`` set to ``leads`` (YAML, e.g. ``"[30m]"``) when given and, unless
    ``calendar``, no holidays and no quiet hours, so that a daemon or a course placed relative
    to the real clock behaves the same at any hour, weekday or date. Returns ``dest``."""
    shutil.copytree(builtin_rules_dir(), dest)
    clinic = dest / "clinic.yaml"
    text = clinic.read_text()
    replacements = {'cron: "0 8 * * mon-fri"': "cron: null"}
    if leads is not None:
        replacements["reminder_leads: [72h, 24h]"] = f"reminder_leads: {leads}"
    if not calendar:
        replacements["holidays: {country: GB, subdivision: ENG}"] = "holidays: null"
        replacements['quiet_hours: {start: "21:00", end: "08:00"}'] = "quiet_hours: null"
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"the built-in clinic.yaml no longer has {old!r}")
        text = text.replace(old, new)
    clinic.write_text(text)
    return dest


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) serving ``handler`` in a thread, for tests and
    benchmarks that need a webhook receiver: ``url`` is its ``/hook`` address; ``close()`` stops
    it. Requests run in daemon threads, so a handler that hangs never blocks the caller's exit."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
