"""Courses for the report tests (SPEC §13), built through the library on an SQLite file with a
pinned clock: none, one and forty PHQ-9 scores, withdrawn, completed, across Pacific/Chatham's
clock change, long problem areas, and markup in data a rule file can hold."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ipt_workflow import Workflow

REPO = Path(__file__).resolve().parents[1]
LONG_AREA = "interpersonal_deficits_with_isolation_after_moving_abroad_for_work"[:64]
MARKUP = "<script>alert(1)</script>"
#: When every report is made: 2026-05-01 12:00 UTC.
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def report_rules(tmp_path: Path) -> Path:
    """The built-in rules with two more ipt-16 problem areas, a long one and one that is
    markup (rule files are data: the report must show it as text), and a version string
    that is markup too."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    path = rules / "ipt-16.yaml"
    text = path.read_text()
    text = text.replace(
        "problem_areas: [grief, role_dispute, role_transition, interpersonal_deficits]",
        f'problem_areas: [grief, role_dispute, role_transition, interpersonal_deficits, {LONG_AREA}, "{MARKUP}"]',
    )
    assert LONG_AREA in text
    path.write_text(text)
    return rules


class Builder:
    """Applies events with the clock at each event's instant (as they would be recorded)."""

    def __init__(self, wf: Workflow) -> None:
        self.wf = wf

    def at(self, course: str, event: str, when: datetime, data: dict[str, Any] | None = None) -> None:
        self.wf.clock = lambda: when
        self.wf.apply(course, event, data, at=when)

    def measure(self, course: str, when: datetime, score: int, item9: int = 0) -> None:
        self.at(course, "record_measure", when, {"instrument": "phq9", "score": score, "item9": item9})

    def session_start(self, course: str, number: int) -> datetime:
        session = next(s for s in self.wf.plan(course).sessions if s.number == number)
        return session.start.astimezone(UTC)

    def hold(self, course: str, number: int) -> None:
        self.at(course, "hold_session", self.session_start(course, number) + timedelta(minutes=55), {"number": number})


def create(
    wf: Workflow, course: str, client: str, therapist: str, *, tz: str = "Europe/London", start: str = "2026-03-02",
    time: str = "10:00",
) -> None:  # fmt: skip
    wf.clock = lambda: datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    wf.create_course(client=client, start=start, time=time, tz=tz, course_id=course, therapist=therapist)


def start_intervention(b: Builder, course: str, areas: list[str], baseline: int | None) -> None:
    """Intake, a baseline PHQ-9 (unless None), sessions 1-2 held, the focus set, intervention."""
    first = b.session_start(course, 1)
    b.at(course, "complete_intake", first - timedelta(hours=1))
    if baseline is not None:
        b.measure(course, first - timedelta(minutes=5), baseline)
    b.hold(course, 1)
    b.at(course, "set_focus", b.session_start(course, 2) - timedelta(minutes=10), {"areas": areas})
    b.hold(course, 2)
    b.at(course, "start_intervention", b.session_start(course, 2) + timedelta(hours=1))


def build_all(db: Path, rules: Path) -> dict[str, Workflow]:
    """Every report case in one database; returns the open Workflow under key ``wf``."""
    wf = Workflow(str(db), rules=rules)
    b = Builder(wf)

    create(wf, "none", "CL-0001", "T-01")  # created only: no PHQ-9
    b.at("none", "complete_intake", b.session_start("none", 1) - timedelta(hours=1))

    create(wf, "one", "CL-0002", "T-02")
    start_intervention(b, "one", ["grief"], baseline=16)

    # Forty scores every other day from the baseline, one with item 9; a missed, a cancelled
    # and a moved session; the problem areas long and markup.
    create(wf, "many", "CL-0003", "T-02", time="15:00")
    start_intervention(b, "many", [LONG_AREA, MARKUP], baseline=None)
    first = b.session_start("many", 1) - timedelta(minutes=5)
    scores = [
        (first + timedelta(hours=36 * i), max(1, 22 - i // 2 + (i % 3)), 1 if i in (0, 5) else 0) for i in range(40)
    ]

    def until(when: datetime) -> None:  # the scores taken before ``when``, in time order
        while scores and scores[0][0] < when:
            b.measure("many", *scores.pop(0))

    until(b.session_start("many", 3))
    b.hold("many", 3)
    until(b.session_start("many", 4) + timedelta(hours=1))
    b.at("many", "miss_session", b.session_start("many", 4) + timedelta(hours=1), {"number": 4})
    until(b.session_start("many", 5) - timedelta(days=2))
    b.at("many", "cancel_session", b.session_start("many", 5) - timedelta(days=2), {"number": 5})
    until(b.session_start("many", 6) - timedelta(days=3))
    b.at("many", "reschedule_session", b.session_start("many", 6) - timedelta(days=3),
         {"number": 6, "start": "2026-04-09T16:00"})  # fmt: skip
    until(NOW)
    assert not scores

    create(wf, "withdrawn", "CL-0004", "T-03")
    start_intervention(b, "withdrawn", ["role_dispute"], baseline=19)
    b.measure("withdrawn", b.session_start("withdrawn", 3) - timedelta(minutes=5), 17, item9=2)
    b.hold("withdrawn", 3)
    b.at("withdrawn", "withdraw", b.session_start("withdrawn", 4) - timedelta(days=1))

    create(wf, "completed", "CL-0005", "T-04", start="2026-01-05")
    start_intervention(b, "completed", ["role_transition"], baseline=20)
    scores = iter([17, 12, 8, 4])
    for n in range(3, 40):
        sessions = wf.plan("completed").sessions
        if not any(s.number == n for s in sessions):
            break
        if n % 3 == 0:
            b.measure("completed", b.session_start("completed", n) - timedelta(minutes=5), next(scores, 3))
        b.hold("completed", n)
    last = wf.plan("completed").sessions[-1]
    b.at("completed", "complete", last.start.astimezone(UTC) + timedelta(hours=2))

    # Pacific/Chatham leaves daylight saving time on Sun 2026-04-05 (+13:45 to +12:45).
    create(wf, "chatham", "CL-0006", "T-05", tz="Pacific/Chatham", start="2026-03-16")
    start_intervention(b, "chatham", ["grief"], baseline=14)
    for n in (3, 4, 5):
        b.hold("chatham", n)
    b.measure("chatham", b.session_start("chatham", 5) + timedelta(hours=2), 9)
    wf.clock = lambda: NOW
    return {"wf": wf}
