"""The ``ipt`` command line end to end (SPEC §6, §7): the real console script in a subprocess.

Each run costs a few tenths of a second, so the simulate scenarios run once per module and
several tests read the same output.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import RULES, RunIpt, error_line, run_ipt, usage_error

PROTOCOL_IDS = {"ipt-16", "ipt-b-8", "ipt-a-12", "ipt-g-8", "ipt-m"}
RULE_FILES = {f"{p}.yaml" for p in PROTOCOL_IDS} | {"clinic.yaml"}
SIMULATE = ("simulate", "--protocol", "ipt-16", "--start", "2026-03-02", "--time", "10:00", "--tz", "Europe/London")
LOCAL_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
UTC_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00|Z)$")


def as_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stderr)
    return json.loads(result.stdout)


# ---------------------------------------------------------------- scenarios


def weekly_course() -> list[dict[str, Any]]:
    """ipt-16 from intake to the automatic start of termination, Mondays 10:00 London.

    Naive ``at`` values are London wall-clock time; the clocks go forward on 2026-03-29.
    A PHQ-9 with item 9 = 1 is recorded on 2026-04-13 at 10:55 BST (09:55 UTC).
    """
    events: list[dict[str, Any]] = [
        {"at": "2026-03-02T10:50", "event": "hold_session"},
        {"at": "2026-03-02T10:55", "event": "record_measure", "data": {"instrument": "phq9", "score": 18, "item9": 0}},
        {"at": "2026-03-02T11:00", "event": "complete_intake"},
        {"at": "2026-03-09T10:50", "event": "hold_session"},
        {"at": "2026-03-09T10:55", "event": "set_focus", "data": {"areas": ["grief", "role_dispute"]}},
        {"at": "2026-03-09T11:00", "event": "start_intervention"},
    ]
    for week in range(2, 9):  # sessions 3..9
        day = date(2026, 3, 9) + timedelta(weeks=week - 1)
        held = day + timedelta(days=1) if day == date(2026, 4, 6) else day  # Easter Monday: on Tuesday
        events.append({"at": f"{held}T10:50", "event": "hold_session"})
        if day == date(2026, 4, 13):
            events.append(
                {
                    "at": f"{day}T10:55",
                    "event": "record_measure",
                    "data": {"instrument": "phq9", "score": 15, "item9": 1},
                }
            )
    return events


MISSES = [
    {"at": "2026-03-02T10:50:00", "event": "hold_session"},
    {"at": "2026-03-02T11:00:00", "event": "complete_intake"},
    {"at": "2026-03-09T10:20:00", "event": "miss_session"},
    {"at": "2026-03-16T10:20:00", "event": "miss_session"},
    {"at": "2026-03-23T10:20:00", "event": "miss_session"},
]


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("scenarios")
    (base / "course.yaml").write_text(yaml.safe_dump(weekly_course(), sort_keys=False), encoding="utf-8")
    (base / "course.json").write_text(json.dumps(weekly_course(), indent=1), encoding="utf-8")
    (base / "misses.json").write_text(json.dumps(MISSES), encoding="utf-8")
    return base


@pytest.fixture(scope="module")
def course_run(scenario_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_ipt(*SIMULATE, "--events", scenario_dir / "course.yaml", "--json", cwd=scenario_dir)


@pytest.fixture(scope="module")
def course(course_run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert course_run.stderr == "", course_run.stderr
    data: dict[str, Any] = ok_json(course_run)
    return data


@pytest.fixture(scope="module")
def misses(scenario_dir: Path) -> dict[str, Any]:
    result = run_ipt(*SIMULATE, "--events", scenario_dir / "misses.json", "--id", "c-42", "--json", cwd=scenario_dir)
    data: dict[str, Any] = ok_json(result)
    return data


# ---------------------------------------------------------------- help, protocols


def test_help_lists_the_commands(ipt: RunIpt) -> None:
    result = ipt("--help")
    assert result.returncode == 0, result.stderr
    for command in ("protocols", "rules", "diagram", "simulate"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout
    assert result.stderr == ""


def test_protocols_list_table_and_json(ipt: RunIpt) -> None:
    table = ipt("protocols", "list")
    assert table.returncode == 0, table.stderr
    for pid in PROTOCOL_IDS:
        assert pid in table.stdout
    rows = ok_json(ipt("protocols", "list", "--json"))
    assert isinstance(rows, list)
    assert {row["id"] for row in rows} == PROTOCOL_IDS
    by_id = {row["id"]: row for row in rows}
    assert by_id["ipt-16"]["sessions"] == {"min": 12, "planned": 12, "max": 16}
    assert by_id["ipt-16"]["duration_minutes"] == 50


def test_protocols_show_json(ipt: RunIpt) -> None:
    data = ok_json(ipt("protocols", "show", "ipt-16", "--json"))
    assert data["id"] == "ipt-16"
    assert data["sessions"]["min"] == 12 and data["sessions"]["max"] == 16
    assert data["phases"]["assessment"] == {"min": 1, "max": 3}
    assert 2 <= data["phases"]["termination"] <= 4
    assert isinstance(data["guards"], dict) and "start_intervention" in data["guards"]
    rule_ids = {rule["id"] for rule in data["rules"]}
    assert {"safety.item9", "termination.auto"} <= rule_ids
    for rule in data["rules"]:
        assert rule["actions"], rule
    assert data["reminder_kinds"]["safety_alert"] == "therapist"
    assert data["reminder_kinds"]["session_reminder"] == "client"


def test_protocols_show_table(ipt: RunIpt) -> None:
    result = ipt("protocols", "show", "ipt-g-8")
    assert result.returncode == 0, result.stderr
    assert "ipt-g-8" in result.stdout


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["table", "json"])
def test_protocols_show_unknown(ipt: RunIpt, json_flag: tuple[str, ...]) -> None:
    line = error_line(ipt("protocols", "show", "ipt-99", *json_flag))
    assert "unknown protocol 'ipt-99'" in line
    assert "ipt-16" in line  # the known ones are named


def test_rules_env_var_and_fallback_clinic(ipt: RunIpt, tmp_path: Path) -> None:
    own = tmp_path / "own-rules"
    own.mkdir()
    (own / "ipt-b-8.yaml").write_text((RULES / "ipt-b-8.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    rows = ok_json(ipt("protocols", "list", "--json", env={"IPT_RULES": str(own)}))
    assert [row["id"] for row in rows] == sorted(PROTOCOL_IDS)  # over the built-in rules
    rows = ok_json(ipt("--rules", own, "protocols", "list", "--json"))
    assert [row["id"] for row in rows] == sorted(PROTOCOL_IDS)
    listing = ipt("--rules", own, "rules", "check").stdout.splitlines()
    assert f"protocol ipt-b-8 1.0.0 (default): {own / 'ipt-b-8.yaml'}" in listing
    assert f"clinic policy: {RULES.resolve() / 'clinic.yaml'}" in listing


def test_a_bad_rules_directory_is_refused_with_every_problem(ipt: RunIpt, tmp_path: Path) -> None:
    own = tmp_path / "bad-rules"
    own.mkdir()
    text = (RULES / "ipt-16.yaml").read_text(encoding="utf-8")
    (own / "ipt-16.yaml").write_text(text.replace("schema_version: 1", "schema_version: 2"), encoding="utf-8")
    (own / "ipt-m.yaml").write_text((RULES / "ipt-m.yaml").read_text() + "bogus: 1\n", encoding="utf-8")
    result = ipt("--rules", own, "protocols", "list")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith("error: ") for line in lines)
    assert any(line.startswith(f"error: {own / 'ipt-16.yaml'}: schema_version (line ") for line in lines)
    assert any(line.startswith(f"error: {own / 'ipt-m.yaml'}: bogus (line ") for line in lines)


# ---------------------------------------------------------------- rules check


def bad_rule_file(tmp_path: Path) -> tuple[Path, str]:
    """ipt-16 with a rule whose condition names an unknown fact; (path, expected prefix)."""
    text = (RULES / "ipt-16.yaml").read_text(encoding="utf-8").rstrip("\n")
    index = len(yaml.safe_load(text)["rules"])
    text += '\n  - id: test.typo\n    trigger: [miss_session]\n    when: "consecutive_misses >= 2"\n'
    text += "    actions: [{emit: attendance_review}]\n"
    path = tmp_path / "BAD.yaml"
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index('    when: "consecutive_misses >= 2"') + 1
    return path, f"{path}: rules[{index}].when (line {line}): unknown name 'consecutive_misses'"


def test_rules_check_builtin(ipt: RunIpt) -> None:
    result = ipt("rules", "check")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    ok = [line.removeprefix("ok ") for line in lines if line.startswith("ok ")]
    assert {Path(name).name for name in ok} >= RULE_FILES
    listed = [line for line in lines if not line.startswith("ok ")]
    assert listed == [
        *(f"protocol {p} 1.0.0 (default): {RULES.resolve() / p}.yaml" for p in sorted(PROTOCOL_IDS)),
        f"clinic policy: {RULES.resolve() / 'clinic.yaml'}",
    ]
    data = ok_json(ipt("rules", "check", "--json"))
    assert set(data) >= {"ok", "problems", "rules"}
    assert data["problems"] == []
    assert {Path(name).name for name in data["ok"]} >= RULE_FILES
    [book] = data["rules"]
    assert book["clinic"] == {"source": str(RULES.resolve() / "clinic.yaml")}
    assert [(p["id"], p["version"], p["default"]) for p in book["protocols"]] == [
        (p, "1.0.0", True) for p in sorted(PROTOCOL_IDS)
    ]


def test_rules_check_a_bad_file(ipt: RunIpt, tmp_path: Path) -> None:
    bad, prefix = bad_rule_file(tmp_path)
    line = error_line(ipt("rules", "check", bad))
    assert line.startswith(f"error: {prefix}"), line


def test_rules_check_good_and_bad_files(ipt: RunIpt, tmp_path: Path) -> None:
    bad, prefix = bad_rule_file(tmp_path)
    good = RULES / "ipt-b-8.yaml"
    result = ipt("rules", "check", good, bad)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"ok {good}"]
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {prefix}")
    data = json.loads(ipt("rules", "check", good, bad, "--json").stdout)
    assert data["ok"] == [str(good)]
    assert len(data["problems"]) == 1 and data["problems"][0].startswith(prefix)


def test_rules_check_json_exit_status(ipt: RunIpt, tmp_path: Path) -> None:
    bad, prefix = bad_rule_file(tmp_path)
    result = ipt("rules", "check", bad, "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] == []
    assert [p.startswith(prefix) for p in data["problems"]] == [True]


def test_rules_check_a_missing_path(ipt: RunIpt, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.yaml"
    line = error_line(ipt("rules", "check", missing))
    assert line.startswith(f"error: {missing}: "), line


def test_rules_check_a_directory(ipt: RunIpt, tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    _, prefix = bad_rule_file(folder)
    (folder / "clinic.yaml").write_text((RULES / "clinic.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    result = ipt("rules", "check", folder)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"ok {folder / 'clinic.yaml'}",  # what loaded is listed, over the built-in rules
        *(f"protocol {p} 1.0.0 (default): {RULES.resolve() / p}.yaml" for p in sorted(PROTOCOL_IDS)),
        f"clinic policy: {folder / 'clinic.yaml'}",
    ]
    assert result.stderr.startswith(f"error: {prefix}")


def test_rules_check_clinic_with_unknown_zone(ipt: RunIpt, tmp_path: Path) -> None:
    clinic = tmp_path / "clinic.yaml"
    text = (RULES / "clinic.yaml").read_text(encoding="utf-8")
    clinic.write_text(re.sub(r"^timezone: .*$", "timezone: Mars/Base", text, flags=re.MULTILINE), encoding="utf-8")
    good = RULES / "ipt-16.yaml"
    result = ipt("rules", "check", clinic, good)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == [f"ok {good}"]
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {clinic}: timezone (line "), result.stderr
    assert "Mars/Base" in result.stderr


def test_rules_check_clinic_with_impossible_unquoted_date(ipt: RunIpt, tmp_path: Path) -> None:
    clinic = tmp_path / "clinic.yaml"
    text = (RULES / "clinic.yaml").read_text(encoding="utf-8")
    clinic.write_text(re.sub(r"^closures: .*$", "closures: [2026-02-30]", text, flags=re.MULTILINE), encoding="utf-8")
    line = error_line(ipt("rules", "check", clinic))
    assert line.startswith(f"error: {clinic}: "), line


# ---------------------------------------------------------------- diagram


def test_diagram_formats(ipt: RunIpt) -> None:
    mermaid = ipt("diagram")
    assert mermaid.returncode == 0, mermaid.stderr
    assert "stateDiagram-v2" in mermaid.stdout
    assert "assessment --> intervention" in mermaid.stdout
    assert "intake --> assessment" in mermaid.stdout
    dot = ipt("diagram", "--protocol", "ipt-g-8", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert "digraph" in dot.stdout
    assert "ipt-g-8" in dot.stdout


def test_diagram_bad_format_is_a_usage_error(ipt: RunIpt) -> None:
    assert "png" in usage_error(ipt("diagram", "--format", "png"))


def test_diagram_unknown_protocol(ipt: RunIpt) -> None:
    assert "ipt-99" in error_line(ipt("diagram", "--protocol", "ipt-99"))


# ---------------------------------------------------------------- simulate: results


def test_simulate_json_shape(course: dict[str, Any]) -> None:
    assert set(course) >= {"state", "sessions", "reminders", "history"}
    assert course["id"] == "sim"
    for s in course["sessions"]:
        assert set(s) >= {"number", "phase", "start", "status"}, s
        assert LOCAL_ISO.match(s["start"]), s
        assert s["phase"] in {"intake", "assessment", "intervention", "termination"}, s
        assert s["status"] in {"planned", "held", "missed", "cancelled"}, s
    for r in course["reminders"]:
        assert set(r) >= {"id", "course", "kind", "audience", "due", "session", "status"}, r
        assert r["course"] == "sim"
        assert r["audience"] in {"client", "therapist"}
        assert UTC_ISO.match(r["due"]), r
        assert r["session"] is None or isinstance(r["session"], int)
    assert len({r["id"] for r in course["reminders"]}) == len(course["reminders"])
    for h in course["history"]:
        assert set(h) >= {"event", "at", "from", "to", "rule"}, h
        assert UTC_ISO.match(h["at"]), h


def test_simulate_sessions_follow_london_wall_clock(course: dict[str, Any]) -> None:
    sessions = course["sessions"]
    assert [s["number"] for s in sessions] == list(range(1, len(sessions) + 1))
    assert sessions[0]["start"] == "2026-03-02T10:00:00+00:00"
    for s in sessions:
        assert s["start"][11:16] == "10:00", s  # same wall-clock time across the DST change
        offset = "+00:00" if s["start"][:10] < "2026-03-29" else "+01:00"
        assert s["start"].endswith(offset), s
    assert [s["status"] for s in sessions[:9]] == ["held"] * 9
    assert all(s["status"] == "planned" for s in sessions[9:])
    assert sessions[0]["phase"] == "intake"
    assert sessions[1]["phase"] == "assessment"
    assert {s["phase"] for s in sessions[2:9]} == {"intervention"}
    assert {s["phase"] for s in sessions[9:]} == {"termination"}


def test_simulate_auto_termination_in_history(course: dict[str, Any]) -> None:
    assert course["state"] == "termination"
    auto = [h for h in course["history"] if h["rule"] == "termination.auto"]
    assert len(auto) == 1, course["history"]
    entry = auto[0]
    assert (entry["event"], entry["from"], entry["to"]) == ("begin_termination", "intervention", "termination")
    # taken by the rule at the instant of the event that set it off (the ninth hold)
    holds = [h for h in course["history"] if h["event"] == "hold_session"]
    assert entry["at"] == holds[-1]["at"]
    first = course["history"][0]
    assert (first["from"], first["to"]) == (None, "intake")
    moves = [(h["event"], h["from"], h["to"]) for h in course["history"] if h["from"] != h["to"]]
    assert moves[1:] == [
        ("complete_intake", "intake", "assessment"),
        ("start_intervention", "assessment", "intervention"),
        ("begin_termination", "intervention", "termination"),
    ]
    assert all(h["rule"] is None for h in course["history"] if h is not entry)


def test_simulate_safety_alert_for_item9(course: dict[str, Any]) -> None:
    alerts = [r for r in course["reminders"] if r["kind"] == "safety_alert"]
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["audience"] == "therapist"
    assert as_utc(alert["due"]) == as_utc("2026-04-13T09:55:00+00:00")  # 10:55 BST, the event's instant
    assert alert["course"] == "sim"


def test_simulate_a_baseline_item9_of_0_gives_no_alert(ipt: RunIpt, tmp_path: Path) -> None:
    events = tmp_path / "e.yaml"
    events.write_text(
        "- {at: '2026-03-02T10:55', event: record_measure, data: {instrument: phq9, score: 22, item9: 0}}\n",
        encoding="utf-8",
    )
    data = ok_json(ipt(*SIMULATE, "--events", events, "--json"))
    assert not [r for r in data["reminders"] if r["kind"] == "safety_alert"]


def test_simulate_is_deterministic(
    scenario_dir: Path, course_run: subprocess.CompletedProcess[str], course: dict[str, Any]
) -> None:
    again = run_ipt(*SIMULATE, "--events", scenario_dir / "course.yaml", "--json", cwd=scenario_dir)
    assert again.returncode == 0
    assert again.stdout.encode() == course_run.stdout.encode()
    from_json = run_ipt(*SIMULATE, "--events", scenario_dir / "course.json", "--json", cwd=scenario_dir)
    assert from_json.returncode == 0, from_json.stderr
    assert from_json.stdout == course_run.stdout  # the same events as JSON give the same result


def test_simulate_attendance_alerts(misses: dict[str, Any]) -> None:
    assert misses["id"] == "c-42"
    assert {r["course"] for r in misses["reminders"]} == {"c-42"}
    therapist = [r for r in misses["reminders"] if r["kind"] in ("attendance_review", "discharge_review")]
    assert [(r["kind"], r["audience"]) for r in therapist] == [
        ("attendance_review", "therapist"),
        ("discharge_review", "therapist"),
    ]
    review, discharge = therapist
    assert as_utc(review["due"]) == as_utc("2026-03-16T10:20:00+00:00")  # the second miss
    assert as_utc(discharge["due"]) == as_utc("2026-03-23T10:20:00+00:00")  # the third miss
    statuses = [s["status"] for s in misses["sessions"][:4]]
    assert statuses == ["held", "missed", "missed", "missed"]
    # a missed session is not counted: the plan still holds 12 sessions besides the misses
    assert sum(s["status"] != "missed" for s in misses["sessions"]) == 12
    assert misses["state"] == "assessment"


def test_simulate_ids_depend_on_the_course_id(course: dict[str, Any], misses: dict[str, Any]) -> None:
    ids_sim = {r["id"] for r in course["reminders"]}
    ids_c42 = {r["id"] for r in misses["reminders"]}
    assert not ids_sim & ids_c42


def test_simulate_without_events(ipt: RunIpt) -> None:
    result = ipt(*SIMULATE, "--json")
    data = ok_json(result)
    assert result.stderr == ""  # Monday 10:00 is inside working hours: no warning
    assert data["state"] == "intake"
    assert [h["event"] for h in data["history"]] == ["create"]
    assert all(s["status"] == "planned" for s in data["sessions"])


def test_simulate_table_output(ipt: RunIpt, scenario_dir: Path) -> None:
    result = ipt(*SIMULATE, "--events", scenario_dir / "misses.json")
    assert result.returncode == 0, result.stderr
    assert "attendance_review" in result.stdout
    assert "discharge_review" in result.stdout


def test_simulate_slot_outside_working_hours_is_a_warning(ipt: RunIpt) -> None:
    args = ("simulate", "--protocol", "ipt-16", "--start", "2026-03-07", "--time", "19:00", "--tz", "Europe/London")
    result = ipt(*args, "--json")
    data = ok_json(result)
    lines = result.stderr.splitlines()
    assert lines, "a slot outside the clinic's days or hours gives a warning"
    assert all(line.startswith("warning: ") for line in lines), lines
    assert "Traceback" not in result.stderr
    assert data["sessions"][0]["start"] == "2026-03-07T19:00:00+00:00"  # accepted as given


# ---------------------------------------------------------------- simulate: bad input


def replace_option(name: str, value: str) -> tuple[str, ...]:
    args = list(SIMULATE)
    args[args.index(name) + 1] = value
    return tuple(args)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (replace_option("--tz", "Mars/Base"), ("Mars/Base", "time zone")),
        (replace_option("--start", "2026-02-30"), ("--start", "2026-02-30")),
        (replace_option("--time", "25:00"), ("--time", "25:00")),
        (replace_option("--protocol", "ipt-99"), ("ipt-99", "protocol")),
        ((*SIMULATE, "--now", "tomorrow"), ("--now", "tomorrow")),
    ],
    ids=["zone", "date", "time", "protocol", "now"],
)
def test_simulate_bad_options(ipt: RunIpt, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    line = error_line(ipt(*args, "--json"))
    for fragment in fragments:
        assert fragment in line, line


def test_simulate_zone_that_is_a_directory(ipt: RunIpt) -> None:
    line = error_line(ipt(*replace_option("--tz", "Europe"), "--json"))
    assert "Europe" in line


EVENT_FILES = [
    pytest.param(
        "unknown.yaml",
        "- {at: '2026-03-02T10:50', event: hold_sesion}\n",
        ("events[0]", "unknown event 'hold_sesion'"),
        id="unknown-event",
    ),
    pytest.param(
        "score.yaml",
        "- {at: '2026-03-02T10:50', event: record_measure, data: {instrument: phq9, score: 28, item9: 0}}\n",
        ("events[0]", "score", "28"),
        id="phq9-score-28",
    ),
    pytest.param(
        "item9.json",
        '[{"at": "2026-03-02T10:50", "event": "record_measure",'
        ' "data": {"instrument": "phq9", "score": 20, "item9": 4}}]',
        ("events[0]", "item9", "4"),
        id="item9-4",
    ),
    pytest.param(
        "area.yaml",
        "- {at: '2026-03-02T10:50', event: complete_intake}\n"
        "- {at: '2026-03-02T10:55', event: set_focus, data: {areas: [grief, loneliness]}}\n",
        ("events[1]", "problem area 'loneliness'"),
        id="unknown-problem-area",
    ),
    pytest.param(
        "state.yaml",
        "- {at: '2026-03-02T10:50', event: start_intervention}\n",
        ("events[0]", "start_intervention", "intake"),
        id="not-allowed-in-state",
    ),
    pytest.param(
        "syntax.yaml",
        "- {at: '2026-03-02T10:50', event: [hold\n",
        ("line ",),
        id="invalid-yaml",
    ),
    pytest.param(
        "syntax.json",
        '[{"at": "2026-03-02T10:50", "event": "hold_session",}]',
        ("line 1",),
        id="invalid-json",
    ),
    pytest.param(
        "at.yaml",
        "- {at: next tuesday, event: hold_session}\n",
        ("events[0].at", "next tuesday"),
        id="at-not-a-date-time",
    ),
    pytest.param(
        "date-only.yaml",
        "- {at: 2026-03-02, event: hold_session}\n",
        ("events[0].at", "2026-03-02"),
        id="at-a-date-only",
    ),
    pytest.param(
        "order.yaml",
        "- {at: '2026-03-02T10:50', event: hold_session}\n- {at: '2026-03-02T10:40', event: hold_session}\n",
        ("events[1]",),
        id="at-going-backwards",
    ),
    pytest.param(
        "mapping.yaml",
        "at: '2026-03-02T10:50'\nevent: hold_session\n",
        ("events",),
        id="not-a-list",
    ),
]


@pytest.mark.parametrize(("name", "content", "fragments"), EVENT_FILES)
def test_simulate_bad_events_file(
    ipt: RunIpt, tmp_path: Path, name: str, content: str, fragments: tuple[str, ...]
) -> None:
    events = tmp_path / name
    events.write_text(content, encoding="utf-8")
    line = error_line(ipt(*SIMULATE, "--events", events, "--json"))
    assert str(events) in line or name in line, line  # names the file ...
    for fragment in fragments:  # ... and what in it
        assert fragment in line, line


def test_simulate_events_with_impossible_unquoted_date(ipt: RunIpt, tmp_path: Path) -> None:
    events = tmp_path / "feb30.yaml"
    events.write_text("- {at: 2026-02-30T10:50:00, event: hold_session}\n", encoding="utf-8")
    line = error_line(ipt(*SIMULATE, "--events", events, "--json"))
    assert "feb30.yaml" in line


def test_simulate_events_file_missing(ipt: RunIpt, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    line = error_line(ipt(*SIMULATE, "--events", missing, "--json"))
    assert str(missing) in line


def test_simulate_missing_required_option(ipt: RunIpt) -> None:
    stderr = usage_error(ipt(*SIMULATE[:-2], "--json"))
    assert "--tz" in stderr
