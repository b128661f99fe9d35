"""SPEC §6: every read command takes --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

IPT = [str(Path(sys.executable).parent / "ipt")]


def run(*args: str) -> str:
    result = subprocess.run([*IPT, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_diagram_json_is_the_lifecycle_table_with_its_guards() -> None:
    data = json.loads(run("diagram", "--protocol", "ipt-16", "--json"))
    assert data["protocol"] == "ipt-16" and data["initial"] == "intake" and data["format"] == "mermaid"
    assert "stateDiagram-v2" in data["diagram"]
    assert "paused" in data["states"] and "withdrawn" in data["states"]
    start = next(t for t in data["transitions"] if t["event"] == "start_intervention")
    assert start["from"] == ["assessment"] and start["to"] == "intervention"
    assert "assessment_held >= assessment_min" in start["guard"]
    hold = next(t for t in data["transitions"] if t["event"] == "hold_session")
    assert hold["to"] is None and hold["guard"] is None


def test_plan_json_flag_equals_format_json(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "x.sqlite")]
    course = run(*db, "course", "create", "--client", "CL-1", "--start", "2026-03-02", "--time", "10:00",
                 "--tz", "Europe/London", "--now", "2026-03-01T09:00").strip()  # fmt: skip
    by_flag = json.loads(run(*db, "plan", course, "--json"))
    assert by_flag == json.loads(run(*db, "plan", course, "--format", "json"))
    assert by_flag["course"] == course and len(by_flag["sessions"]) == 12
