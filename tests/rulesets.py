"""Rule directories for tests that run on the real clock (issue 8): see
``ipt_workflow.testing.clinic_rules``."""

from __future__ import annotations

from pathlib import Path

from ipt_workflow import testing


def clinic_rules(tmp_path: Path, leads: str | None = None, calendar: bool = True) -> Path:
    """``testing.clinic_rules`` into ``tmp_path/rules``: digests off, optional leads, and no
    holidays or quiet hours unless ``calendar``."""
    return testing.clinic_rules(tmp_path / "rules", leads, calendar)
