"""What the daemon's events carry (enough to act on without calling back), checked against the
JSON Schemas shipped in the package; digest ids unique per site."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ipt_workflow import Workflow
from ipt_workflow.delivery.digests import record_digests
from ipt_workflow.delivery.dispatch import dispatch_due
from ipt_workflow.delivery.sinks import CallableSink
from ipt_workflow.interop.event_schemas import EVENT_TYPES, event_schemas
from ipt_workflow.rulebook.files import builtin_rules_dir, load_rules

T0 = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
SCHEMAS = event_schemas()


def check(event: dict[str, Any]) -> None:
    errors = [e.message for e in Draft202012Validator(SCHEMAS[event["type"]]).iter_errors(event)]
    assert not errors, (event, errors)


def drain(wf: Workflow, now: datetime) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    dispatch_due(wf.store, now, [CallableSink(got.append)])
    return got


def test_every_schema_is_valid_and_printed_by_the_cli() -> None:
    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)
    out = subprocess.run([str(Path(sys.executable).parent / "ipt"), "schema", "events"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout) == SCHEMAS
    assert set(SCHEMAS) == set(EVENT_TYPES) == {"reminder", "alert", "digest"}


def test_a_session_reminder_says_when_where_and_with_whom(tmp_path: Path) -> None:
    with Workflow(str(tmp_path / "x.sqlite"), clock=lambda: T0) as wf:
        wf.create_course(client="CL-1", start="2027-01-11", time="10:00", tz="Europe/London", therapist="T-07",
                         course_id="c-1")  # fmt: skip
        events = drain(wf, datetime(2027, 1, 10, 10, 0, tzinfo=UTC))
    reminders = [e for e in events if e["kind"] == "session_reminder"]
    assert len(reminders) == 2  # 72 h and 24 h before session 1
    for event in events:
        check(event)
    first = reminders[0]
    assert {k: first[k] for k in ("session", "phase", "therapist", "session_therapist", "protocol",
                                  "protocol_version", "timezone")} == {
        "session": 1, "phase": "assessment", "therapist": "T-07", "session_therapist": "T-07",
        "protocol": "ipt-16", "protocol_version": "1.0.0", "timezone": "Europe/London",
    }  # fmt: skip
    assert first["session_start"] == "2027-01-11T10:00:00+00:00"
    assert first["session_end"] == "2027-01-11T10:50:00+00:00"
    assert first["session_start_utc"] == "2027-01-11T10:00:00+00:00"
    assert first["session_end_utc"] == "2027-01-11T10:50:00+00:00"


def test_local_and_utc_differ_in_summer_and_a_move_carries_old_and_new_start(tmp_path: Path) -> None:
    now = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
    with Workflow(str(tmp_path / "x.sqlite"), clock=lambda: now) as wf:
        wf.create_course(client="CL-1", start="2027-06-07", time="10:00", tz="Europe/London", therapist="T-07",
                         course_id="c-1")  # fmt: skip
        drain(wf, now)
        wf.apply("c-1", "reschedule_session", {"number": 1, "start": "2027-06-08T15:30"}, at=now)
        moved = [e for e in drain(wf, now) if e["kind"] == "session_moved"]
    assert len(moved) == 1
    check(moved[0])
    assert moved[0]["old_start"] == "2027-06-07T10:00:00+01:00"
    assert moved[0]["old_start_utc"] == "2027-06-07T09:00:00+00:00"
    assert moved[0]["start"] == "2027-06-08T15:30:00+01:00"
    assert moved[0]["start_utc"] == "2027-06-08T14:30:00+00:00"
    assert moved[0]["session_start"] == "2027-06-08T15:30:00+01:00"
    assert moved[0]["session_end_utc"] == "2027-06-08T15:20:00+00:00"


def test_an_alert_carries_the_course_facts(tmp_path: Path) -> None:
    with Workflow(str(tmp_path / "x.sqlite"), clock=lambda: T0) as wf:
        wf.create_course(client="CL-1", start="2027-01-11", time="10:00", tz="Europe/London", therapist="T-07",
                         course_id="c-1")  # fmt: skip
        wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 12, "item9": 2}, at=T0)
        alerts = [e for e in drain(wf, T0) if e["type"] == "alert"]
    assert [a["kind"] for a in alerts] == ["safety_alert"]
    check(alerts[0])
    assert (alerts[0]["therapist"], alerts[0]["protocol"]) == ("T-07", "ipt-16")


def site_rules(rules: Path, site: str | None) -> Path:
    import shutil

    shutil.copytree(builtin_rules_dir(), rules)
    if site:
        with (rules / "clinic.yaml").open("a") as f:
            f.write(f"site: {site}\n")
    return rules


def digests_at(tmp_path: Path, name: str, site: str | None) -> list[dict[str, Any]]:
    monday_8 = datetime(2027, 1, 11, 8, 0, tzinfo=UTC)
    rules = load_rules(site_rules(tmp_path / f"rules-{name}", site))
    with Workflow(str(tmp_path / name), rules=rules, clock=lambda: T0) as wf:
        wf.create_course(client="CL-1", start="2027-01-11", time="10:00", tz="Europe/London", therapist="T-07",
                         course_id="c-1")  # fmt: skip
        record_digests(wf.store, rules.clinic, monday_8)
        return [e for e in drain(wf, monday_8) if e["type"] == "digest"]


def test_digest_ids_differ_between_sites_and_stay_with_one(tmp_path: Path) -> None:
    north = digests_at(tmp_path, "north.sqlite", "clinic-north")
    south = digests_at(tmp_path, "south.sqlite", "clinic-south")
    again = digests_at(tmp_path, "again.sqlite", "clinic-north")
    assert len(north) == len(south) == 1
    check(north[0])
    assert north[0]["therapist"] == south[0]["therapist"] == "T-07"
    assert north[0]["id"] != south[0]["id"]
    assert again[0]["id"] == north[0]["id"]  # the same site, firing and therapist: the same id
    assert (north[0]["site"], south[0]["site"]) == ("clinic-north", "clinic-south")  # the body says which


def test_without_a_site_each_database_makes_one_once(tmp_path: Path) -> None:
    one = digests_at(tmp_path, "one.sqlite", None)
    two = digests_at(tmp_path, "two.sqlite", None)
    assert one[0]["id"] != two[0]["id"]
    with Workflow(str(tmp_path / "one.sqlite")) as wf:
        site = wf.store.site()
        assert site.startswith("site_") and wf.store.site() == site
    assert one[0]["site"] == site


@pytest.mark.parametrize("site", ["has space", "", "x" * 65])
def test_a_bad_site_is_refused_naming_it(tmp_path: Path, site: str) -> None:
    from ipt_workflow.core.errors import IptError

    rules = site_rules(tmp_path / "rules", None)
    with (rules / "clinic.yaml").open("a") as f:
        f.write(f"site: {json.dumps(site)}\n")
    with pytest.raises(IptError, match="site"):
        load_rules(rules)
