"""PHQ-9 progress and course weeks as measurement-based care reads them (SPEC §13).

Pure: scores and instants in, facts out. Response is a reduction of at least 50 % from the
baseline (the first PHQ-9); remission a latest score under 5. Neither is judged on the
baseline alone: it takes a second score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

#: The PHQ-9 severity bands (Kroenke, Spitzer & Williams 2001): (lowest, highest, label).
SEVERITY_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 4, "minimal"),
    (5, 9, "mild"),
    (10, 14, "moderate"),
    (15, 19, "moderately severe"),
    (20, 27, "severe"),
)
PHQ9_MAX = 27
REMISSION_BELOW = 5
RESPONSE_REDUCTION = 0.5


def severity(score: int) -> str:
    """The band label of a PHQ-9 total: ``minimal`` (0-4) to ``severe`` (20-27)."""
    return next(label for lo, hi, label in SEVERITY_BANDS if lo <= score <= hi)


@dataclass(frozen=True)
class Phq9Progress:
    """Baseline (first score) to latest. ``change`` is the fraction of the baseline gained
    (negative: better), None when the baseline is 0 or there is one score only."""

    baseline: int
    latest: int
    count: int
    change: float | None
    response: bool
    remission: bool

    @property
    def response_threshold(self) -> float:
        """The score at or below which the latest counts as a response (half the baseline)."""
        return self.baseline * RESPONSE_REDUCTION

    @property
    def outcome(self) -> str | None:
        """``remission``, ``response`` or None (remission says more, so it wins)."""
        return "remission" if self.remission else "response" if self.response else None


def phq9_progress(scores: Sequence[int]) -> Phq9Progress | None:
    """The progress of PHQ-9 totals in time order; None when there are none."""
    if not scores:
        return None
    baseline, latest = scores[0], scores[-1]
    several = len(scores) > 1
    change = (latest - baseline) / baseline if several and baseline > 0 else None
    return Phq9Progress(
        baseline=baseline,
        latest=latest,
        count=len(scores),
        change=change,
        response=change is not None and change <= -RESPONSE_REDUCTION,
        remission=several and latest < REMISSION_BELOW,
    )


def phq9_text(progress: Phq9Progress | None) -> str:
    """``PHQ-9 18 → 7 (−61 %), response`` (one line for a table); ``PHQ-9 none recorded``."""
    if progress is None:
        return "PHQ-9 none recorded"
    if progress.count == 1:
        return f"PHQ-9 baseline {progress.baseline} ({severity(progress.baseline)}), no follow-up yet"
    text = f"PHQ-9 {progress.baseline} → {progress.latest}"
    if progress.change is not None:
        text += f" ({percent(progress.change)})"
    return text + (f", {progress.outcome}" if progress.outcome else "")


def percent(change: float) -> str:
    """``−61 %`` / ``+12 %`` / ``0 %``: a signed whole percentage (a true minus sign)."""
    value = round(change * 100)
    return f"{'−' if value < 0 else '+' if value > 0 else ''}{abs(value)} %"


@dataclass(frozen=True)
class CourseWeek:
    """Week ``number`` of ``total``: 0 before the first session's day, 1 in the seven days
    from it, and so on; ``total`` the weeks the plan spans from the first session to the last."""

    number: int
    total: int

    @property
    def text(self) -> str:
        if self.number == 0:
            return f"not started (of {self.total})"
        return f"week {min(self.number, self.total)} of {self.total}" + (" (over)" if self.number > self.total else "")


def course_week(first: date, last: date, today: date) -> CourseWeek:
    """The week of ``today`` in a course whose sessions run from ``first`` to ``last``, all
    days on the course's wall clock (so a clock change never shifts a week)."""
    total = (last - first).days // 7 + 1 if last >= first else 1
    number = (today - first).days // 7 + 1 if today >= first else 0
    return CourseWeek(number=number, total=total)


def phq9_json(scores: Sequence[int]) -> dict[str, object] | None:
    """``{baseline, latest, count, change_percent, response, remission, severity}`` of the
    PHQ-9 totals in time order (``change_percent`` a whole signed number or null); None when
    there are none. The ``phq9`` field of the course shape."""
    progress = phq9_progress(scores)
    if progress is None:
        return None
    return {
        "baseline": progress.baseline,
        "latest": progress.latest,
        "count": progress.count,
        "change_percent": None if progress.change is None else round(progress.change * 100),
        "response": progress.response,
        "remission": progress.remission,
        "severity": severity(progress.latest),
    }
