"""Wall time of `ipt simulate` for one full ipt-16 course, intake to completed."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from _common import ipt_command, rerun, summary, wall_times


def full_course_events() -> list[dict[str, object]]:
    at = datetime(2026, 3, 2, 9, 0)
    events: list[dict[str, object]] = [{"at": at.isoformat(), "event": "complete_intake"}]

    def add(event: str, data: dict[str, object] | None = None, days: int = 0) -> None:
        nonlocal at
        at += timedelta(days=days, minutes=5)
        events.append({"at": at.isoformat(), "event": event, "data": data or {}})

    add("record_measure", {"instrument": "phq9", "score": 18, "item9": 0})
    add("hold_session", days=0)
    add("set_focus", {"areas": ["role_transition", "grief"]}, days=7)
    add("hold_session")
    add("start_intervention")
    for week in range(9):
        add("hold_session", days=7)
        if week % 4 == 3:
            add("record_measure", {"instrument": "phq9", "score": 12 - week, "item9": 0})
    add("complete", days=1)
    return events


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.json"
        events.write_text(json.dumps(full_course_events()))
        base = [*ipt_command(), "simulate", "--protocol", "ipt-16", "--start", "2026-03-02", "--time", "10:00",
                "--tz", "Europe/London", "--events", str(events)]  # fmt: skip
        print(f"events: {len(full_course_events())} (intake to completed)")
        print(f"ipt simulate --json: {summary(wall_times([*base, '--json'], 10))}")
        print(f"ipt simulate (tables): {summary(wall_times(base, 10))}")
    print(rerun("simulate_wall.py"))


if __name__ == "__main__":
    main()
