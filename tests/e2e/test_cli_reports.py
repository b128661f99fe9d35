"""``ipt report``, ``ipt caseload`` and the PHQ-9 line of ``ipt course show`` (SPEC §13), the
real console script against one database of report cases (built once, only read here)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.reportcourses import build_all, report_rules

from .conftest import error_line, run_ipt

NOW = ("--now", "2026-05-01T12:00")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, ...]]:
    """A working directory and the ``--rules DIR --db FILE`` options of the report cases."""
    base = tmp_path_factory.mktemp("report-cli")
    rules = report_rules(base)
    build_all(base / "ipt.sqlite", rules)["wf"].close()
    return base, ("--rules", str(rules), "--db", str(base / "ipt.sqlite"))


def ipt(site: tuple[Path, tuple[str, ...]], *args: str | Path):  # type: ignore[no-untyped-def]
    return run_ipt(*site[1], *args, cwd=site[0])


def test_course_show_prints_the_phq9_line(site: tuple[Path, tuple[str, ...]]) -> None:
    shown = {c: ipt(site, "course", "show", c).stdout.splitlines() for c in ("none", "one", "many", "withdrawn")}
    lines = {c: next(line for line in out if line.startswith("PHQ-9")) for c, out in shown.items()}
    assert lines == {
        "none": "PHQ-9 none recorded",
        "one": "PHQ-9 baseline 16 (moderately severe), no follow-up yet",
        "many": "PHQ-9 22 → 3 (−86 %), remission",
        "withdrawn": "PHQ-9 19 → 17 (−11 %)",
    }
    data = json.loads(ipt(site, "course", "show", "completed", "--json").stdout)
    assert data["phq9"] == {"baseline": 20, "latest": 4, "count": 5, "change_percent": -80, "response": True,
                            "remission": True, "severity": "minimal"}  # fmt: skip
    assert data["foci_worked"] == ["role_transition"]


def test_report_writes_one_private_file(site: tuple[Path, tuple[str, ...]], tmp_path: Path) -> None:
    out = tmp_path / "many.html"
    result = ipt(site, "report", "many", "--out", out, *NOW)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == f"report of course many written to {out}\n"
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert "Generated Fri 2026-05-01 13:00 BST" in html
    assert html.count('class="phq-point"') == 40
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["many.html"]  # no temporary file left


def test_report_without_out_prints_the_page(site: tuple[Path, tuple[str, ...]]) -> None:
    result = ipt(site, "report", "chatham", *NOW)
    assert result.returncode == 0 and result.stdout.startswith("<!DOCTYPE html>")
    assert "Generated Sat 2026-05-02 00:45 +1245" in result.stdout


def test_report_refusals(site: tuple[Path, tuple[str, ...]], tmp_path: Path) -> None:
    assert error_line(ipt(site, "report", "nope", *NOW)) == "error: unknown course 'nope'"
    missing = tmp_path / "no-such-dir" / "r.html"
    assert error_line(ipt(site, "report", "many", "--out", missing)) == (
        f"error: --out {missing}: directory {missing.parent} does not exist"
    )
    assert error_line(ipt(site, "report", "many", "--out", tmp_path)) == f"error: --out {tmp_path}: is a directory"
    assert list(tmp_path.iterdir()) == []


def test_caseload_json_has_one_row_per_active_course(site: tuple[Path, tuple[str, ...]]) -> None:
    rows = json.loads(ipt(site, "caseload", "--json", *NOW).stdout)
    assert [r["course"] for r in rows] == ["chatham", "many", "none", "one"]  # no withdrawn, no completed
    many = next(r for r in rows if r["course"] == "many")
    keys = ("state", "week", "weeks", "held", "missed", "next_session", "next_session_number")
    assert {k: many[k] for k in keys} == {
        "state": "intervention", "week": 9, "weeks": 14, "held": 3, "missed": 1,
        "next_session": "2026-05-05T15:00:00+01:00", "next_session_number": 10,
    }  # fmt: skip
    assert many["phq9"]["remission"] is True and many["phq9_text"] == "PHQ-9 22 → 3 (−86 %), remission"
    # Not delivered (no daemon ran): the two item-9 alerts and the unrecorded sessions 6-9.
    assert [(a["kind"], a["session"]) for a in many["open_alerts"]] == [
        ("safety_alert", 2), ("safety_alert", 2), ("attendance_unrecorded", 6), ("attendance_unrecorded", 7),
        ("attendance_unrecorded", 8), ("attendance_unrecorded", 9),
    ]  # fmt: skip
    only = json.loads(ipt(site, "caseload", "--therapist", "T-02", "--json", *NOW).stdout)
    assert [r["course"] for r in only] == ["many", "one"]


def test_caseload_table_and_page(site: tuple[Path, tuple[str, ...]], tmp_path: Path) -> None:
    table = ipt(site, "caseload", "--therapist", "T-02", *NOW)
    assert table.returncode == 0, table.stderr
    assert "Caseload of T-02 (2 active)" in table.stdout
    row = next(line for line in table.stdout.splitlines() if "│ many" in line)
    assert "9 of 14" in row and "22 → 3 (−86 %), remission" in row and "Tue 2026-05-05 15:00 BST" in row
    out = tmp_path / "caseload.html"
    page = ipt(site, "caseload", "--therapist", "T-02", "--out", out, *NOW)
    assert (page.returncode, page.stdout) == (0, "")
    assert out.read_text().count('class="course-row"') == 2
