"""PHQ-9 progress as measurement-based care judges it (SPEC §13): response is a 50 % fall
from the baseline, remission a latest score under 5; neither on the baseline alone."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ipt_workflow.core.progress import course_week, percent, phq9_json, phq9_progress, phq9_text, severity


@pytest.mark.parametrize(
    ("score", "band"),
    [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
     (15, "moderately severe"), (19, "moderately severe"), (20, "severe"), (27, "severe")],
)  # fmt: skip
def test_severity_bands(score: int, band: str) -> None:
    assert severity(score) == band


@pytest.mark.parametrize(
    ("scores", "text"),
    [
        ([], "PHQ-9 none recorded"),
        ([18], "PHQ-9 baseline 18 (moderately severe), no follow-up yet"),
        ([18, 12], "PHQ-9 18 → 12 (−33 %)"),
        ([18, 9], "PHQ-9 18 → 9 (−50 %), response"),  # exactly half: a response
        ([18, 10], "PHQ-9 18 → 10 (−44 %)"),
        ([18, 12, 4], "PHQ-9 18 → 4 (−78 %), remission"),
        ([6, 4], "PHQ-9 6 → 4 (−33 %), remission"),  # under 5 without halving
        ([10, 14], "PHQ-9 10 → 14 (+40 %)"),
        ([0, 3], "PHQ-9 0 → 3, remission"),  # no percentage of a zero baseline
        ([4, 4], "PHQ-9 4 → 4 (0 %), remission"),
    ],
)
def test_phq9_line(scores: list[int], text: str) -> None:
    assert phq9_text(phq9_progress(scores)) == text


def test_phq9_json() -> None:
    assert phq9_json([]) is None
    assert phq9_json([20]) == {"baseline": 20, "latest": 20, "count": 1, "change_percent": None,
                               "response": False, "remission": False, "severity": "severe"}  # fmt: skip
    assert phq9_json([20, 15, 9]) == {"baseline": 20, "latest": 9, "count": 3, "change_percent": -55,
                                      "response": True, "remission": False, "severity": "mild"}  # fmt: skip


def test_percent_has_a_true_minus_sign() -> None:
    assert (percent(-0.555), percent(0.12), percent(0.001)) == ("−56 %", "+12 %", "0 %")


def test_course_week_counts_calendar_days_on_the_wall_clock() -> None:
    first, last = date(2026, 3, 2), date(2026, 5, 18)  # 11 weeks apart, across a clock change
    assert course_week(first, last, date(2026, 3, 1)).text == "not started (of 12)"
    assert course_week(first, last, first).text == "week 1 of 12"
    assert course_week(first, last, date(2026, 3, 8)).text == "week 1 of 12"
    assert course_week(first, last, date(2026, 3, 9)).text == "week 2 of 12"
    assert course_week(first, last, last).text == "week 12 of 12"
    assert course_week(first, last, last + timedelta(weeks=2)).text == "week 12 of 12 (over)"
