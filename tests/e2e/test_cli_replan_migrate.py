"""``ipt replan``, ``ipt rules migrate`` and the daemon after a rule change, end to end
(SPEC §11, issue 11): the issue's scenario (leads changed, pause, resume, ``daemon --once``)
sends nothing the new rules would not plan; a daemon running while ``ipt replan`` runs and
while ``clinic.yaml`` is edited emits no reminder that neither the old nor the new plan holds,
and none twice (real processes); bad input is one line, exit 1, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from ipt_workflow import Workflow
from ipt_workflow.core.planner import plan
from ipt_workflow.rulebook.files import load_rules
from tests.rulesets import clinic_rules
from tests.sinkfiles import lines, wait_for

from .conftest import RunIpt, error_line

IPT = [str(Path(sys.executable).parent / "ipt")]
LONDON = ("--time", "10:00", "--tz", "Europe/London")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def set_leads(rules: Path, leads: str) -> None:
    """Edit ``reminder_leads`` in ``clinic.yaml`` the way an editor saves: a new file moved into place."""
    clinic = rules / "clinic.yaml"
    text = "\n".join(
        f"reminder_leads: {leads}" if line.startswith("reminder_leads:") else line
        for line in clinic.read_text().splitlines()
    )
    tmp = rules / ".clinic.yaml.tmp"
    tmp.write_text(text + "\n")
    os.replace(tmp, clinic)


def create(ipt: RunIpt, rules: Path, db: Path, course_id: str, start: str = "2027-01-04") -> None:
    ok(ipt("--rules", rules, "--db", db, "course", "create", "--client", f"CL-{course_id}", "--id", course_id,
           "--start", start, *LONDON, "--now", "2027-01-01T09:00"))  # fmt: skip


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_issue_leads_changed_pause_resume_then_the_daemon_sends_nothing_the_new_rules_would_not_plan(
    ipt: RunIpt, tmp_path: Path
) -> None:
    rules, db, out = (
        clinic_rules(tmp_path / "rules", "[72h, 24h]", calendar=False),
        tmp_path / "x.sqlite",
        tmp_path / "o",
    )
    create(ipt, rules, db, "A")
    create(ipt, rules, db, "B")  # no event after the change: only the daemon replans it
    ok(ipt("--rules", rules, "--db", db, "course", "event", "A", "complete_intake", "--now", "2027-01-01T09:10"))
    set_leads(rules, "[24h]")
    ok(ipt("--rules", rules, "--db", db, "course", "event", "A", "pause", "--now", "2027-01-01T10:00"))
    ok(ipt("--rules", rules, "--db", db, "course", "event", "A", "resume", "--now", "2027-01-20T10:00"))
    # By Feb 10 the old plan's 72h reminders of A's moved sessions and of B's would all be due.
    result = ipt("--rules", rules, "--db", db, "daemon", "--once", "--now", "2027-02-10T12:00", "--sink", f"file:{out}")
    ok(result)
    assert "replanned course B: rules changed" in result.stderr
    assert "replanned course A" not in result.stderr  # its events already brought it under the new rules
    sent = lines(out)
    assert sent
    for course_id in ("A", "B"):
        shown = json.loads(ok(ipt("--rules", rules, "--db", db, "course", "show", course_id, "--json")))
        starts = {s["number"]: datetime.fromisoformat(s["start"]) for s in shown["sessions"]}
        for e in sent:
            if e["course"] == course_id and e["kind"] == "session_reminder":
                assert starts[e["session"]] - datetime.fromisoformat(e["due"]) == timedelta(hours=24), e
        with Workflow(str(db), rules=str(rules)) as wf:
            course = wf.course(course_id)
            fresh = {r.id for r in plan(course, wf.rules.protocol("ipt-16"), wf.rules.clinic).reminders}
        assert {e["id"] for e in sent if e["course"] == course_id} <= fresh


def test_replan_and_migrate_print_what_changes_and_dry_runs_write_nothing(ipt: RunIpt, tmp_path: Path) -> None:
    rules, db = clinic_rules(tmp_path / "rules", "[24h]", calendar=False), tmp_path / "x.sqlite"
    create(ipt, rules, db, "A")
    set_leads(rules, "[24h, 2h]")
    before = digest(db)
    dry = ok(ipt("--rules", rules, "--db", db, "replan", "--dry-run", "--now", "2027-01-02T09:00"))
    assert dry.splitlines()[0] == "A (ipt-16 1.0.0): would replan"
    assert "  reminder added: session_reminder session 1 due 2027-01-04T08:00:00+00:00 (" in dry
    assert dry.splitlines()[-1] == "dry run (nothing written): 1 replanned"
    assert digest(db) == before
    real = json.loads(ok(ipt("--rules", rules, "--db", db, "replan", "--now", "2027-01-02T09:00", "--json")))
    assert (real["replanned"], len(real["courses"][0]["reminders"]["added"])) == (1, 12)
    assert ok(ipt("--rules", rules, "--db", db, "replan", "--now", "2027-01-02T09:00")) == "no course to change\n"

    newer = (rules / "ipt-16.yaml").read_text().replace('version: "1.0.0"', 'version: "1.1.0"')
    (rules / "ipt-16-next.yaml").write_text(newer.replace("planned: 12", "planned: 14", 1))
    args = ("--rules", rules, "--db", db, "rules", "migrate", "--protocol", "ipt-16", "--to", "1.1.0",
            "--now", "2027-01-02T09:00")  # fmt: skip
    before = digest(db)
    dry = ok(ipt(*args, "--dry-run"))
    assert dry.splitlines()[:3] == [
        "A (ipt-16 1.0.0 -> 1.1.0): would migrate",
        "  session 13 added: Mon 2027-03-29 10:00 BST",
        "  session 14 added: Mon 2027-04-05 10:00 BST",
    ]
    assert digest(db) == before
    assert ok(ipt(*args)) == dry.replace("would migrate", "migrated").replace("dry run (nothing written): ", "")
    shown = json.loads(ok(ipt("--rules", rules, "--db", db, "course", "show", "A", "--json")))
    assert (shown["protocol_version"], len(shown["sessions"])) == ("1.1.0", 14)
    assert shown["history"][-1]["event"] == "migrate"
    assert shown["history"][-1]["data"] == {"from": "1.0.0", "to": "1.1.0"}


def test_bad_input_is_one_line_exit_1_and_writes_nothing(ipt: RunIpt, tmp_path: Path) -> None:
    rules, db = clinic_rules(tmp_path / "rules", "[24h]", calendar=False), tmp_path / "x.sqlite"
    create(ipt, rules, db, "A")
    before = digest(db)
    base = ("--rules", rules, "--db", db)
    assert error_line(ipt(*base, "rules", "migrate", "--protocol", "ipt-16", "--to", "9.9.9")) == (
        f"error: --to: protocol 'ipt-16' has no version '9.9.9' in {rules} (known: 1.0.0)"
    )
    line = error_line(ipt(*base, "rules", "migrate", "--protocol", "ipt-99", "--to", "1.0.0"))
    assert line.startswith("error: --protocol: unknown protocol 'ipt-99' (known: ")
    line = error_line(ipt(*base, "course", "create", "--client", "CL-9", "--start", "2027-01-04", *LONDON,
                          "--protocol", "ipt-16@9.9.9"))  # fmt: skip
    assert "unknown version '9.9.9' of protocol 'ipt-16' (known: 1.0.0)" in line
    assert error_line(ipt(*base, "replan", "--course", "nope")) == "error: --course: unknown course 'nope'"
    set_leads(rules, "5")  # a policy field of the wrong type
    line = error_line(ipt(*base, "replan"))
    assert line.startswith(f"error: {rules / 'clinic.yaml'}:") and "reminder_leads" in line
    assert digest(db) == before


def test_a_daemon_running_during_replan_and_a_clinic_yaml_edit_sends_only_old_or_new_plan_reminders_once(
    ipt: RunIpt, tmp_path: Path
) -> None:
    rules, db = clinic_rules(tmp_path / "rules", "[24h, 2h]", calendar=False), tmp_path / "x.sqlite"
    for i in range(6):
        create(ipt, rules, db, f"c{i}")  # sessions Mondays 10:00 from 2027-01-04
    policies = {"old": load_rules(rules).clinic}
    outs = [tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"]

    def start(now: str, out: Path, log: Path) -> subprocess.Popen[str]:
        with log.open("w") as sink:  # a file, not a pipe: a full pipe would block the daemon
            return subprocess.Popen(
                [*IPT, "--db", str(db), "--rules", str(rules), "daemon", "--sink", f"file:{out}", "--sweep", "0.2",
                 "--now", now],
                stdout=sink, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip

    def started(log: Path) -> None:  # its clock starts then: wait for it, however loaded the machine
        assert wait_for(lambda: "started dialect" in log.read_text(), seconds=30), log.read_text()

    def stop(daemon: subprocess.Popen[str]) -> None:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        assert daemon.returncode == 0

    # 1. Under [24h, 2h]: session 1's 2h reminders fall due at 08:00 on the daemon's clock
    # while the leads change to [24h, 1h] and `ipt replan` runs.
    daemon = start("2027-01-04T07:59:57", outs[0], tmp_path / "d1.log")
    try:
        started(tmp_path / "d1.log")
        assert wait_for(lambda: len(lines(outs[0])) >= 6), "the 24h reminders already due were not sent"
        set_leads(rules, "[24h, 1h]")
        ok(ipt("--rules", rules, "--db", db, "replan", "--now", "2027-01-04T07:59:59"))
        time.sleep(4)  # past 08:00 on the daemon's clock
    finally:
        if daemon.poll() is None:
            stop(daemon)
    policies["mid"] = load_rules(rules).clinic
    # 2. Under [24h, 1h]: the 1h reminders fall due at 09:00; clinic.yaml changes to [24h, 45m]
    # just before, with no `ipt replan`: the daemon reloads the rules and replans first.
    log2 = tmp_path / "d2.log"
    daemon = start("2027-01-04T08:59:57", outs[1], log2)
    try:
        started(log2)
        set_leads(rules, "[24h, 45m]")
        # At 09:00 on its clock the daemon claims the 1h reminders, sees the rules changed,
        # reloads them and replans every course first.
        assert wait_for(lambda: log2.read_text().count("rules changed") == 6, seconds=30), log2.read_text()
    finally:
        if daemon.poll() is None:
            stop(daemon)
    policies["new"] = load_rules(rules).clinic
    text = log2.read_text()
    assert "Traceback" not in text and "rules reloaded" in text

    with Workflow(str(db), rules=str(rules)) as wf:
        protocol = wf.rules.protocol("ipt-16")
        courses = [wf.course(f"c{i}") for i in range(6)]
    plans = {
        name: {r.id for c in courses for r in plan(c, protocol, policy).reminders} for name, policy in policies.items()
    }
    for phase, (out, held) in enumerate(zip(outs, [("old", "mid"), ("mid", "new")], strict=True)):
        sent = [e["id"] for e in lines(out)]
        allowed = plans[held[0]] | plans[held[1]]
        assert set(sent) <= allowed, f"phase {phase + 1}: sent a reminder neither plan holds"
    every = [e["id"] for out in outs for e in lines(out)]
    assert len(every) == len(set(every)), "a reminder was sent twice"
    # None of the 1h reminders went out: the rules had changed before they were due.
    assert not any(e["due"].endswith("T09:00:00+00:00") for e in lines(outs[1]))
