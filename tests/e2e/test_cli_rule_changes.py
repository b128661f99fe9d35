"""Rule changes end to end (SPEC §11, issue 11): protocol versions side by side and
``ID@VERSION``, ``--rules DIR`` over the built-in rules and ``rules check`` listing them,
``attendance_unrecorded`` alerts, late cancellations, measures entered late."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from .conftest import RULES, RunIpt, error_line

LONDON = ("--start", "2027-01-04", "--time", "10:00", "--tz", "Europe/London")
NOW = ("--now", "2027-01-01T09:00")
CLINIC = (RULES / "clinic.yaml").read_text(encoding="utf-8")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def ipt16(version: str, planned: int = 12) -> str:
    text = (RULES / "ipt-16.yaml").read_text(encoding="utf-8").replace('version: "1.0.0"', f'version: "{version}"')
    return re.sub(r"planned: 12", f"planned: {planned}", text, count=1)


def newer_rules(tmp_path: Path) -> Path:
    """A rules directory holding only ipt-16 1.1.0 (14 sessions), under any file name."""
    folder = tmp_path / "newer"
    folder.mkdir()
    (folder / "ipt-16-next.yaml").write_text(ipt16("1.1.0", planned=14), encoding="utf-8")
    return folder


def create(ipt: RunIpt, db: Path, course_id: str, *extra: str | Path, rules: Path | None = None) -> Any:
    before = ("--rules", rules) if rules else ()
    args = ("course", "create", "--client", f"CL-{course_id}", *LONDON, "--id", course_id, *NOW, "--json")
    return ok_json(ipt(*before, "--db", db, *args, *extra))


def course_ids(ipt: RunIpt, db: Path) -> list[str]:
    return [row["id"] for row in ok_json(ipt("--db", db, "course", "list", "--json"))]


# ---------------------------------------------------------------- versions side by side


def test_new_courses_take_the_highest_version_and_courses_follow_the_one_they_pinned(
    ipt: RunIpt, tmp_path: Path
) -> None:
    newer, db = newer_rules(tmp_path), tmp_path / "x.sqlite"
    a = create(ipt, db, "A", rules=newer)
    assert (a["protocol_version"], len(a["sessions"])) == ("1.1.0", 14)
    b = create(ipt, db, "B", "--protocol", "ipt-16@1.0.0", rules=newer)
    assert (b["protocol_version"], len(b["sessions"])) == ("1.0.0", 12)
    c = create(ipt, db, "C")  # the built-in rules: 1.0.0
    assert c["protocol_version"] == "1.0.0"

    # C (1.0.0) keeps working while 1.1.0 is the default
    event = ("course", "event", "C", "hold_session", "--at", "2027-01-04T10:50", "--now", "2027-01-04T11:00")
    assert ok(ipt("--rules", newer, "--db", db, *event)).startswith("C: intake -> intake (version 2)")
    plan = ok_json(ipt("--rules", newer, "--db", db, "plan", "C", "--json"))
    assert len(plan["sessions"]) == 12
    # A pinned 1.1.0: without it, refused naming the version and those there are
    line = error_line(ipt("--db", db, "plan", "A"))
    assert line == (
        "error: course 'A' follows ipt-16 1.1.0, but the rules directory has versions 1.0.0: "
        "load the rules it was created with"
    )


def test_an_unknown_version_is_one_line_and_writes_nothing(ipt: RunIpt, tmp_path: Path) -> None:
    newer, db = newer_rules(tmp_path), tmp_path / "x.sqlite"
    create(ipt, db, "A", rules=newer)
    known = "(known: 1.0.0, 1.1.0)"
    args = ("course", "create", "--client", "CL-9", *LONDON, "--id", "Z", *NOW, "--protocol", "ipt-16@9.9.9")
    line = error_line(ipt("--rules", newer, "--db", db, *args))
    assert line == f"error: unknown version '9.9.9' of protocol 'ipt-16' {known}"
    sim = ("simulate", "--protocol", "ipt-16@2", *LONDON)
    assert error_line(ipt("--rules", newer, *sim)) == f"error: unknown version '2' of protocol 'ipt-16' {known}"
    line = error_line(ipt("--rules", newer, "diagram", "--protocol", "ipt-16@1"))
    assert line.startswith("error: unknown version '1'")
    assert error_line(ipt("--rules", newer, "protocols", "show", "ipt-16@1.2")).startswith("error: unknown version")
    csv = tmp_path / "rows.csv"
    csv.write_text("client,therapist,protocol,start,time,tz\nCL-5,T-1,ipt-16@0.9.0,2027-01-04,12:00,Europe/London\n")
    line = error_line(ipt("--rules", newer, "--db", db, "import", csv, *NOW))
    assert line == f"error: {csv}:2: unknown version '0.9.0' of protocol 'ipt-16' {known}"
    assert course_ids(ipt, db) == ["A"]


def test_id_at_version_in_simulate_diagram_protocols_and_import(ipt: RunIpt, tmp_path: Path) -> None:
    newer, db = newer_rules(tmp_path), tmp_path / "x.sqlite"
    rules = ("--rules", newer)
    sim = ok_json(ipt(*rules, "simulate", "--protocol", "ipt-16@1.0.0", *LONDON, "--json"))
    assert (sim["protocol_version"], len(sim["sessions"])) == ("1.0.0", 12)
    sim = ok_json(ipt(*rules, "simulate", "--protocol", "ipt-16", *LONDON, "--json"))
    assert (sim["protocol_version"], len(sim["sessions"])) == ("1.1.0", 14)
    assert ok_json(ipt(*rules, "diagram", "--protocol", "ipt-16@1.0.0", "--json"))["version"] == "1.0.0"
    assert ok_json(ipt(*rules, "diagram", "--json"))["version"] == "1.1.0"
    assert ok_json(ipt(*rules, "protocols", "show", "ipt-16@1.0.0", "--json"))["version"] == "1.0.0"
    shown = ok(ipt(*rules, "protocols", "show", "ipt-16")).splitlines()[0]
    assert shown == f"ipt-16 1.1.0: Individual IPT for depression  ({newer / 'ipt-16-next.yaml'})"
    listed = ok_json(ipt(*rules, "protocols", "list", "--json"))
    assert [(r["id"], r["version"], r["default"]) for r in listed if r["id"] == "ipt-16"] == [
        ("ipt-16", "1.0.0", False),
        ("ipt-16", "1.1.0", True),
    ]
    csv = tmp_path / "rows.csv"
    csv.write_text(
        "client,therapist,protocol,start,time,tz,id\n"
        "CL-5,T-1,ipt-16@1.0.0,2027-01-04,12:00,Europe/London,OLD\n"
        "CL-6,T-1,ipt-16,2027-01-04,13:00,Europe/London,NEW\n"
    )
    assert ok(ipt(*rules, "--db", db, "import", csv, *NOW)) == "imported 2 of 2 courses\n"
    for course_id, version in (("OLD", "1.0.0"), ("NEW", "1.1.0")):
        shown = ok_json(ipt(*rules, "--db", db, "course", "show", course_id, "--json"))
        assert shown["protocol_version"] == version


# ---------------------------------------------------------------- --rules DIR over the built-in rules


def test_a_directory_with_only_clinic_yaml_lists_and_runs_the_builtin_protocols(ipt: RunIpt, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "clinic.yaml").write_text(CLINIC.replace("timezone: Europe/London", "timezone: Europe/Dublin"))
    (own / "ipt-16-v2.yaml").write_text(ipt16("2.0.0"))
    result = ipt("--rules", own, "rules", "check")
    assert ok(result).splitlines() == [
        f"ok {own / 'clinic.yaml'}",
        f"ok {own / 'ipt-16-v2.yaml'}",
        f"protocol ipt-16 1.0.0: {RULES / 'ipt-16.yaml'}",
        f"protocol ipt-16 2.0.0 (default): {own / 'ipt-16-v2.yaml'}",
        *(f"protocol {p} 1.0.0 (default): {RULES / p}.yaml" for p in ("ipt-a-12", "ipt-b-8", "ipt-g-8", "ipt-m")),
        f"clinic policy: {own / 'clinic.yaml'}",
    ]
    data = ok_json(ipt("--rules", own, "rules", "check", "--json"))
    assert data["ok"] == [str(own / "clinic.yaml"), str(own / "ipt-16-v2.yaml")] and data["problems"] == []
    assert data["rules"][0]["clinic"] == {"source": str(own / "clinic.yaml")}
    assert data["rules"][0]["protocols"][1] == {
        "id": "ipt-16", "version": "2.0.0", "default": True, "source": str(own / "ipt-16-v2.yaml"),
    }  # fmt: skip
    sim = ok_json(ipt("--rules", own, "simulate", "--protocol", "ipt-b-8", *LONDON, "--json"))
    assert sim["protocol"] == "ipt-b-8"


def test_two_files_with_one_id_and_version_are_one_line_each_naming_both(ipt: RunIpt, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "a.yaml").write_text(ipt16("1.1.0"))
    (own / "b.yaml").write_text(ipt16("1.1.0"))
    expected = (
        f"error: {own / 'b.yaml'}: version (line 5): protocol 'ipt-16' version '1.1.0' is also defined in "
        f"{own / 'a.yaml'}"
    )
    result = ipt("--rules", own, "rules", "check")
    assert result.returncode == 1 and result.stderr.splitlines() == [expected]
    db = tmp_path / "x.sqlite"
    args = ("course", "create", "--client", "CL-1", *LONDON, *NOW)
    assert error_line(ipt("--rules", own, "--db", db, *args)) == expected
    assert not db.exists()


def test_a_policy_field_of_the_wrong_type_is_one_line_naming_file_and_line(ipt: RunIpt, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    path = own / "clinic.yaml"
    text = CLINIC.replace("  no_show_after: 15m", "  no_show_after: banana")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if "banana" in t)
    prefix = f"error: {path}: attendance.no_show_after (line {line}): "
    result = ipt("--rules", own, "rules", "check")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(prefix) and "banana" in result.stderr
    db = tmp_path / "x.sqlite"
    create_args = ("course", "create", "--client", "CL-1", *LONDON, *NOW)
    assert error_line(ipt("--rules", own, "--db", db, *create_args)).startswith(prefix)
    assert not db.exists()


# ---------------------------------------------------------------- every setting used


def test_attendance_unrecorded_alerts_the_therapist_until_the_session_is_recorded(ipt: RunIpt, tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    create(ipt, db, "A")

    def alerts() -> dict[int, tuple[str, str]]:
        rows = ok_json(ipt("--db", db, "reminders", "--course", "A", "--json"))
        return {r["session"]: (r["due"], r["status"]) for r in rows if r["kind"] == "attendance_unrecorded"}

    first = alerts()
    assert sorted(first) == list(range(1, 13))
    assert first[1] == ("2027-01-04T11:05:00+00:00", "pending")  # 10:00 + 50 min + no_show_after 15m
    event = ("course", "event", "A", "hold_session", "--at", "2027-01-04T10:50", "--now", "2027-01-04T11:00")
    ok(ipt("--db", db, *event))
    assert alerts()[1][1] == "cancelled" and alerts()[2][1] == "pending"
    # session 2 (11 Jan) is never recorded: the daemon tells the therapist once it is 15 min past its end
    out = tmp_path / "out.jsonl"
    ok(ipt("--db", db, "daemon", "--once", "--now", "2027-01-11T11:06", "--sink", f"file:{out}"))
    sent = [json.loads(x) for x in out.read_text().splitlines()]
    unrecorded = [e for e in sent if e["kind"] == "attendance_unrecorded"]
    assert [(e["course"], e["type"], e["due"]) for e in unrecorded] == [("A", "alert", "2027-01-11T11:05:00+00:00")]


def test_a_cancellation_inside_late_cancel_window_counts_as_a_miss(ipt: RunIpt, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "clinic.yaml").write_text(CLINIC.replace("late_cancel_window: 24h", "late_cancel_window: 48h"))
    db = tmp_path / "x.sqlite"
    for rules in (None, own):
        cid = "WIDE" if rules else "STD"
        create(ipt, db, cid, rules=rules)
        before = ("--rules", own) if rules else ()
        steps = [("miss_session", "2027-01-04T10:30"), ("cancel_session", "2027-01-09T12:00")]  # 46 h ahead
        for name, at in steps:
            ok(ipt(*before, "--db", db, "course", "event", cid, name, "--at", at, "--now", at))
        shown = ok_json(ipt(*before, "--db", db, "course", "show", cid, "--json"))
        assert shown["history"][-1]["data"] == ({"number": 2, "late": True} if rules else {})
        kinds = {r["kind"] for r in ok_json(ipt("--db", db, "reminders", "--course", cid, "--json"))}
        assert ("attendance_review" in kinds) is bool(rules)


# ---------------------------------------------------------------- measures


def test_measures_item9_at_most_the_total_and_entered_late_in_time_order(ipt: RunIpt, tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    create(ipt, db, "A")

    def event(name: str, at: str, data: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        extra = ("--data", json.dumps(data)) if data else ()
        return ipt("--db", db, "course", "event", "A", name, "--at", at, "--now", "2027-01-20T12:00", *extra)

    ok(event("hold_session", "2027-01-04T10:50"))
    ok(event("hold_session", "2027-01-11T10:50"))
    bad = event("record_measure", "2027-01-11T11:00", {"instrument": "phq9", "score": 0, "item9": 3})
    assert error_line(bad) == (
        "error: event 'record_measure' data: item9: 3 is more than the total score 0 (item 9 counts in it)"
    )
    ok(event("record_measure", "2027-01-11T11:00", {"instrument": "phq9", "score": 12, "item9": 0}))
    # a questionnaire filled in on 4 January, entered after the changes of 11 January
    ok(event("record_measure", "2027-01-04T11:00", {"instrument": "phq9", "score": 18, "item9": 0}))
    shown = ok_json(ipt("--db", db, "course", "show", "A", "--json"))
    assert [(m["score"], m["at"], m["session"]) for m in shown["measurements"]] == [
        (18, "2027-01-04T11:00:00+00:00", 1),
        (12, "2027-01-11T11:00:00+00:00", 2),
    ]
    assert shown["version"] == 5
    # never before the course was created; other events never before the last change
    line = error_line(event("record_measure", "2027-01-01T08:00", {"instrument": "phq9", "score": 9, "item9": 0}))
    assert line == "error: --at: 2027-01-01T08:00:00+00:00 is before the course was created (2027-01-01T09:00:00+00:00)"
    line = error_line(event("complete_intake", "2027-01-10T12:00"))
    assert line == (
        "error: --at: 2027-01-10T12:00:00+00:00 is before the course's last change (2027-01-11T11:00:00+00:00)"
    )
    assert ok_json(ipt("--db", db, "course", "show", "A", "--json"))["version"] == 5
