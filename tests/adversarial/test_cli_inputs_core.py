"""What a hostile or careless user does at the command line to the core and the rule files
(issue 9): each refusal is exit 1, one ``error:`` line naming the option or field, and
nothing written (no database file, no row, no new history)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RULES, RunIpt, error_line
from tests.e2e.conftest import ipt as ipt  # the fixture, shared with tests/e2e

NEW = ("course", "create", "--client", "C1", "--start", "2026-03-02", "--time", "10:00", "--tz", "Europe/London",
       "--now", "2026-02-20T09:00")  # fmt: skip
ITEM9 = json.dumps({"instrument": "phq9", "score": 20, "item9": 3})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "clinic.sqlite"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A copy of the built-in rules with digests off."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    clinic = target / "clinic.yaml"
    text = clinic.read_text(encoding="utf-8").replace('cron: "0 8 * * mon-fri"', "cron: null")
    assert "cron: null" in text
    clinic.write_text(text, encoding="utf-8")
    return target


def create(ipt: RunIpt, db: Path, *extra: str) -> str:
    return ok(ipt(*extra, "--db", db, *NEW)).strip()


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def history(db: Path, course: str) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT seq, event, at FROM ipt_history WHERE course_id = ? ORDER BY seq", course)


def reminders(db: Path, course: str) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT kind, audience, session, status FROM ipt_reminders WHERE course_id = ? ORDER BY due, id",
                course)  # fmt: skip


def event(
    ipt: RunIpt, db: Path, course: str, name: str, at: str, *extra: str, rules: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``course event`` at ``at``, with ``--now`` the same instant unless ``extra`` gives one."""
    now = () if "--now" in extra else ("--now", at)
    pre = ("--rules", rules) if rules else ()
    return ipt(*pre, "--db", db, "course", "event", course, name, "--at", at, *now, *extra)


# ---------------------------------------------------------------- 1. alerts survive withdrawal


def test_a_safety_alert_raised_before_a_withdrawal_still_reaches_the_therapist(
    ipt: RunIpt, db: Path, rules_dir: Path
) -> None:
    course = create(ipt, db)
    ok(event(ipt, db, course, "record_measure", "2026-02-20T10:00:00Z", "--data", ITEM9))
    ok(event(ipt, db, course, "withdraw", "2026-02-20T10:00:30Z"))
    kept = [r for r in reminders(db, course) if r[3] != "cancelled"]
    assert kept == [("safety_alert", "therapist", None, "pending")]
    assert {r[1] for r in reminders(db, course) if r[3] == "cancelled"} == {"client", "therapist"}  # prep not due
    out = ok(ipt("--rules", rules_dir, "--db", db, "daemon", "--once", "--now", "2026-02-20T10:01:00Z"))
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["kind"], e["course"]) for e in lines] == [("safety_alert", course)]


# ---------------------------------------------------------------- 2. --at is bounded by now


def test_an_at_more_than_a_day_ahead_is_refused_and_the_course_stays_usable(ipt: RunIpt, db: Path) -> None:
    course = create(ipt, db)
    before = history(db, course)
    line = error_line(event(ipt, db, course, "complete_intake", "2026-02-21T09:00:01Z", "--now", "2026-02-20T09:00"))
    assert line.startswith("error: --at: ") and "more than 1 day after now" in line, line
    line = error_line(event(ipt, db, course, "complete_intake", "9999-12-31T23:59", "--now", "2026-02-20T09:00"))
    assert line == "error: --at: '9999-12-31T23:59' is outside the years 1970 to 2200", line
    assert history(db, course) == before
    ok(event(ipt, db, course, "complete_intake", "2026-02-21T09:00:00Z", "--now", "2026-02-20T09:00"))
    ok(event(ipt, db, course, "hold_session", "2026-03-02T10:50"))


# ---------------------------------------------------------------- 3. reminders of a session already held


def test_a_session_cannot_be_held_before_it_starts(ipt: RunIpt, db: Path, rules_dir: Path) -> None:
    """SPEC §9: attendance is recorded when it can be true; the early hold is refused and its
    reminders still go out."""
    course = create(ipt, db)
    before = history(db, course)
    line = error_line(event(ipt, db, course, "hold_session", "2026-02-21T09:00"))
    assert "session 1 starts Mon 2026-03-02 10:00 GMT" in line, line
    assert history(db, course) == before
    assert {r[3] for r in reminders(db, course) if r[2] == 1} == {"pending"}
    out = ok(ipt("--rules", rules_dir, "--db", db, "daemon", "--once", "--now", "2026-03-01T10:00"))
    assert {json.loads(line)["kind"] for line in out.splitlines()} == {"session_reminder", "measure_due"}


# ---------------------------------------------------------------- 4. dates at the extremes


def replaced(args: tuple[str, ...], option: str, value: str) -> tuple[str, ...]:
    i = args.index(option)
    return (*args[: i + 1], value, *args[i + 2 :])


OUT_OF_RANGE = [
    pytest.param(replaced(NEW, "--start", "0001-01-01"), "--start", id="start-year-1"),
    pytest.param(replaced(NEW, "--start", "9999-12-01"), "--start", id="start-year-9999"),
    pytest.param(replaced(NEW, "--now", "0001-01-01T00:00+05:00"), "--now", id="create-now-year-1"),
    pytest.param(replaced(NEW, "--now", "9999-12-31T23:59-01:00"), "--now", id="create-now-year-9999"),
    pytest.param(("reminders", "--from", "0001-01-01T00:00+01:00"), "--from", id="from-year-1"),
    pytest.param(("reminders", "--until", "9999-12-31T23:59-01:00"), "--until", id="until-year-9999"),
    pytest.param(("simulate", "--protocol", "ipt-16", "--start", "9999-12-01", "--time", "10:00", "--tz", "UTC"),
                 "--start", id="simulate-start"),
    pytest.param(("simulate", "--protocol", "ipt-16", "--start", "2026-03-02", "--time", "10:00", "--tz", "UTC",
                  "--now", "0001-01-01T00:00+05:00"), "--now", id="simulate-now"),
    pytest.param(("daemon", "--once", "--now", "0001-01-01T00:00+01:00", "--sink", "file:out.jsonl"), "--now",
                 id="daemon-now"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "option"), OUT_OF_RANGE)
def test_a_date_out_of_range_is_one_line_and_nothing_is_written(
    ipt: RunIpt, db: Path, tmp_path: Path, args: tuple[str, ...], option: str
) -> None:
    line = error_line(ipt("--db", db, *args))
    assert line.startswith(f"error: {option}: '") and line.endswith("is outside the years 1970 to 2200"), line
    assert not db.exists() or rows(db, "SELECT count(*) FROM ipt_courses") == [(0,)]
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("plan", "{id}", "--format", "ics", "--now", "0001-01-01T00:00+01:00"), "--now"),
        (("course", "event", "{id}", "pause", "--at", "0001-01-01T00:00+05:00"), "--at"),
        (("course", "event", "{id}", "resume", "--at", "2300-01-01", "--now", "2300-01-01T00:00"), "--now"),
    ],
)
def test_a_date_out_of_range_on_a_course_is_one_line(ipt: RunIpt, db: Path, args: tuple[str, ...], option: str) -> None:
    course = create(ipt, db)
    ok(event(ipt, db, course, "pause", "2026-02-21T00:00"))
    before = history(db, course)
    line = error_line(ipt("--db", db, *(a.format(id=course) for a in args)))
    assert line.startswith(f"error: {option}: '") and line.endswith("is outside the years 1970 to 2200"), line
    assert history(db, course) == before


def test_resuming_after_a_very_long_pause_replans(ipt: RunIpt, db: Path) -> None:
    course = create(ipt, db)
    ok(event(ipt, db, course, "pause", "2026-02-21T00:00"))
    ok(event(ipt, db, course, "resume", "2200-01-01T00:00"))
    plan = json.loads(ok(ipt("--db", db, "plan", course, "--json")))
    assert plan["sessions"][0]["start"].startswith("2200-01-06")


CSV_HEADER = "client,therapist,protocol,start,time,tz\n"


def test_csv_rows_out_of_range_are_named_by_line(ipt: RunIpt, db: Path, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text(
        CSV_HEADER + "A,T,ipt-16,0001-01-01,10:00,Asia/Tokyo\nB,T,ipt-16,2026-03-02,10:00,UTC\n"
        "C,T,ipt-16,9999-12-01,10:00,Europe/London\n",
        encoding="utf-8",
    )
    result = ipt("--db", db, "import", "x.csv", "--now", "2026-02-20T09:00")
    assert "Traceback" not in result.stderr and result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: x.csv:2: start: '0001-01-01' is outside the years 1970 to 2200",
        "error: x.csv:4: start: '9999-12-01' is outside the years 1970 to 2200",
    ]
    assert rows(db, "SELECT count(*) FROM ipt_courses") == [(0,)]
    result = ipt("--db", db, "import", "x.csv", "--skip-bad", "--now", "2026-02-20T09:00")
    assert ok(result) == "imported 1 of 3 courses, 2 refused\n"
    assert len(result.stderr.splitlines()) == 2
    assert rows(db, "SELECT client FROM ipt_courses") == [("B",)]


# ---------------------------------------------------------------- 5. CEL


def append_rule(rules_dir: Path, rule: str) -> Path:
    path = rules_dir / "ipt-16.yaml"
    path.write_text(path.read_text(encoding="utf-8").rstrip() + "\n" + rule, encoding="utf-8")
    return path


def test_a_condition_that_fails_at_run_time_refuses_that_event(ipt: RunIpt, db: Path, rules_dir: Path) -> None:
    append_rule(rules_dir, '  - id: bad.division\n    trigger: [hold_session]\n    when: "10 / sessions_missed > 0"\n'
                           "    actions: [{emit: attendance_review}]\n")  # fmt: skip
    ok(ipt("--rules", rules_dir, "rules", "check"))  # sessions_missed is 1 in the sample facts
    course = create(ipt, db, "--rules", rules_dir)
    before = history(db, course)
    line = error_line(event(ipt, db, course, "hold_session", "2026-03-02T10:50", rules=rules_dir))
    assert "rule 'bad.division'" in line and "cannot be evaluated" in line and "division by zero" in line, line
    assert history(db, course) == before
    ok(event(ipt, db, course, "complete_intake", "2026-03-02T10:50", rules=rules_dir))


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ("1 / 0 > 0", "cannot be evaluated: division by zero"),
        ("[1][3] == 1", "cannot be evaluated: index out of bounds"),
        ("[" + ",".join(["1"] * 60) + "].all(a, [" + ",".join(["1"] * 60) + "].all(b, [1,2].all(c, true)))",
         "comprehension inside another"),
    ],
)  # fmt: skip
def test_rules_check_catches_errors_and_costly_conditions(ipt: RunIpt, rules_dir: Path, when: str,
                                                          fragment: str) -> None:  # fmt: skip
    path = append_rule(rules_dir, f"  - id: bad.one\n    trigger: [pause]\n    when: \"{when}\"\n"
                                  "    actions: [{emit: attendance_review}]\n")  # fmt: skip
    line = error_line(ipt("rules", "check", path))
    assert line.startswith(f"error: {path}: rules[7].when (line ") and fragment in line, line


# ---------------------------------------------------------------- 6. rule values bounded


@pytest.mark.parametrize(
    ("name", "old", "new", "location"),
    [
        ("ipt-16.yaml", "cadence_weeks: 1", "cadence_weeks: 100000", "cadence_weeks (line "),
        ("ipt-16.yaml", "leads: [48h]", "leads: [5300000w]", "reminders[0].leads (line "),
        ("ipt-16.yaml", "follow_ups: [12w, 52w]", "follow_ups: [99999999999999999w]", "follow_ups (line "),
        ("ipt-16.yaml", 'version: "1.0.0"', f'version: "1.{"0" * 40}"', "version (line "),
        ("ipt-16.yaml", "- id: safety.item9", f"- id: safety.{'x' * 60}", "rules[0].id (line "),
        ("clinic.yaml", 'cron: "0 8 * * mon-fri"', 'cron: "0 8 1-31/40 * *"', "digest.cron (line "),
    ],
)
def test_rules_check_bounds_every_value(
    ipt: RunIpt, rules_dir: Path, name: str, old: str, new: str, location: str
) -> None:
    path = rules_dir / name
    text = (RULES / name).read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    result = ipt("rules", "check", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {location}"), lines


# ---------------------------------------------------------------- 7. odd YAML and odd files


def test_a_non_scalar_key_is_named_with_its_line(ipt: RunIpt, tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("schema_version: 1\n? [a]\n: 1\n", encoding="utf-8")
    line = error_line(ipt("rules", "check", path))
    assert line == f"error: {path}: line 2, column 3: a key must be a plain name, not a list", line


def test_two_clinic_files_in_one_directory_are_refused(ipt: RunIpt, rules_dir: Path) -> None:
    shutil.copy(rules_dir / "clinic.yaml", rules_dir / "clinic.yml")
    line = error_line(ipt("--rules", rules_dir, "protocols", "list"))
    assert line == f"error: {rules_dir / 'clinic.yml'}: (file): a second clinic policy (the first is " \
                   f"{rules_dir / 'clinic.yaml'})", line  # fmt: skip


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_not_waited_on(ipt: RunIpt, rules_dir: Path) -> None:
    fifo = rules_dir / "extra.yaml"
    os.mkfifo(fifo)
    line = error_line(ipt("rules", "check", fifo))
    assert line == f"error: {fifo}: (file): not a regular file", line
    line = error_line(ipt("--rules", rules_dir, "protocols", "list"))
    assert line == f"error: {fifo}: (file): not a regular file", line


# ---------------------------------------------------------------- 8. zones


@pytest.mark.parametrize("name", ["localtime", "Factory", "posixrules", "Europe/../Europe/London", "right/UTC"])
def test_a_name_that_is_not_an_iana_zone_is_refused(ipt: RunIpt, db: Path, name: str) -> None:
    line = error_line(ipt("--db", db, *replaced(NEW, "--tz", name)))
    assert line.startswith(f"error: --tz: '{name}' is not an IANA time zone"), line
    assert not db.exists()
