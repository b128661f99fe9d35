"""Therapist digests: the clinic's cron fires in its own zone, once a local day at 08:00 on
both daylight-saving change days; each therapist with an active course gets one digest per
firing however many daemons or ``--once`` runs see it, with that day's sessions and alerts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ipt_workflow import Workflow
from ipt_workflow.core.policy import ClinicPolicy, Digest
from ipt_workflow.delivery.digests import _weekday_names, cron_trigger, fires_between, record_digests
from ipt_workflow.delivery.dispatch import dispatch_due
from ipt_workflow.delivery.sinks import FileSink
from ipt_workflow.rulebook.files import builtin_rules_dir
from tests.sinkfiles import lines

IPT = [str(Path(sys.executable).parent / "ipt")]
LONDON = ZoneInfo("Europe/London")
ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Antarctica/Troll"]


def daily(wf: Workflow, cron: str = "0 8 * * *") -> ClinicPolicy:
    return wf.rules.clinic.model_copy(update={"digest": Digest(cron=cron)})


@pytest.mark.parametrize("zone", ZONES)
def test_a_daily_0800_cron_fires_once_a_local_day_at_0800_all_year(zone: str) -> None:
    tz = ZoneInfo(zone)
    year = (datetime(2026, 1, 1, tzinfo=tz), datetime(2027, 1, 1, tzinfo=tz))
    fires = fires_between(cron_trigger("0 8 * * *", zone), *year)
    local = [f.astimezone(tz) for f in fires]
    assert [d.date() for d in local] == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert {(d.hour, d.minute) for d in local} == {(8, 0)}
    offsets = {d.utcoffset() for d in local}
    assert len(offsets) == 2  # both sides of the change


def test_the_repeated_hour_does_not_stall_the_trigger() -> None:
    """APScheduler 3.11's own CronTrigger returns 01:30 GMT forever after firing at it on a
    fall-back day; ours moves on, and both 01:30s are one digest."""
    trigger = cron_trigger("30 1 * * *", "Europe/London")
    second = datetime(2026, 10, 25, 1, 30, tzinfo=LONDON, fold=1)
    assert trigger.get_next_fire_time(second, second.astimezone(UTC)) == datetime(2026, 10, 26, 1, 30, tzinfo=LONDON)
    fires = fires_between(trigger, datetime(2026, 10, 25, tzinfo=LONDON), datetime(2026, 10, 25, 12, tzinfo=LONDON))
    assert [f.astimezone(UTC).hour for f in fires] == [0, 1]  # 01:30 BST, then 01:30 GMT


def test_crontab_weekday_numbers_mean_what_crontab_says() -> None:
    assert _weekday_names("1-5") == "mon,tue,wed,thu,fri"  # APScheduler alone would read tue-sat
    assert _weekday_names("0") == _weekday_names("7") == "sun"
    assert _weekday_names("*/2") == "tue,thu,sat,sun"
    assert _weekday_names("fri-mon") == "mon,fri,sat,sun"
    assert _weekday_names("0-6") == "*"


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25"], ids=["spring-forward", "fall-back"])
def test_0800_london_digest_fires_once_at_0800_on_both_change_days(db_url: str, tmp_path: Path, day: str) -> None:
    """A ``--once`` run every minute of the change day (and one more run at each instant):
    one digest, due and emitted at 08:00 local, listing that day's session."""
    out = tmp_path / "out.jsonl"
    midnight = datetime.fromisoformat(day).replace(tzinfo=LONDON)
    with Workflow(db_url, clock=lambda: midnight - timedelta(days=3)) as wf:
        wf.create_course(client="CL-1", start=day, time="10:00", tz="Europe/London", therapist="T-1", course_id="c-1")
        clinic = daily(wf)
        sink = FileSink(out)
        now = midnight.astimezone(UTC)
        while now < midnight.astimezone(UTC) + timedelta(hours=12):
            record_digests(wf.store, clinic, now)
            dispatch_due(wf.store, now, [sink])
            record_digests(wf.store, clinic, now)  # a second daemon seeing the same minute
            now += timedelta(minutes=1)
        sink.close()
    digests = [e for e in lines(out) if e["type"] == "digest"]
    assert len(digests) == 1
    expected = datetime.fromisoformat(f"{day}T08:00").replace(tzinfo=LONDON).astimezone(UTC)
    assert digests[0]["due"] == digests[0]["emitted_at"] == expected.isoformat()
    assert digests[0]["late"] is False and digests[0]["therapist"] == "T-1" and digests[0]["date"] == day
    start = datetime.fromisoformat(f"{day}T10:00").replace(tzinfo=LONDON).isoformat()
    assert digests[0]["sessions"] == [{"course": "c-1", "number": 1, "start": start}]


def test_a_digest_names_todays_sessions_and_alerts_of_active_courses_only(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    monday_0800 = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # GMT
    with Workflow(db_url, clock=lambda: t0) as wf:
        for cid, therapist, slot in (("c-1", "T-1", "10:00"), ("c-2", "T-1", "14:00"), ("c-3", "T-2", "09:00"),
                                     ("c-4", "T-3", "11:00")):  # fmt: skip
            wf.create_course(client=f"CL-{cid}", start="2026-03-02", time=slot, tz="Europe/London",
                             therapist=therapist, course_id=cid)  # fmt: skip
        wf.apply("c-4", "withdraw", at=t0)
        alert = {"instrument": "phq9", "score": 9, "item9": 1}
        wf.clock = lambda: monday_0800 - timedelta(hours=2)  # recorded as it happens
        wf.apply("c-2", "record_measure", alert, at=monday_0800 - timedelta(hours=2))
        saturday = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)
        assert record_digests(wf.store, wf.rules.clinic, saturday) == 0  # mon-fri
        assert record_digests(wf.store, wf.rules.clinic, monday_0800) == 2  # T-1 and T-2, not T-3
        assert record_digests(wf.store, wf.rules.clinic, monday_0800 + timedelta(minutes=5)) == 0
        sink = FileSink(out)
        result = dispatch_due(wf.store, monday_0800, [sink])
        sink.close()
    assert result.digests == 2
    by_therapist = {e["therapist"]: e for e in lines(out) if e["type"] == "digest"}
    assert set(by_therapist) == {"T-1", "T-2"}
    t1 = by_therapist["T-1"]
    assert t1["course"] is None and t1["kind"] == "digest" and t1["date"] == "2026-03-09"
    assert t1["sessions"] == [
        {"course": "c-1", "number": 2, "start": "2026-03-09T10:00:00+00:00"},
        {"course": "c-2", "number": 2, "start": "2026-03-09T14:00:00+00:00"},
    ]
    assert [(a["course"], a["kind"], a["status"]) for a in t1["alerts"]] == [("c-2", "safety_alert", "delivered")]
    assert by_therapist["T-2"]["alerts"] == [] and len(by_therapist["T-2"]["sessions"]) == 1
    assert "CL-" not in out.read_text()  # ids, never client references


def write_rules(tmp_path: Path, cron: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(builtin_rules_dir(), rules)
    clinic = rules / "clinic.yaml"
    clinic.write_text(clinic.read_text().replace('cron: "0 8 * * mon-fri"', f'cron: "{cron}"'))
    return rules


def test_once_from_cron_sends_a_missed_digest_late_and_never_twice(tmp_path: Path) -> None:
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    rules = write_rules(tmp_path, "0 8 * * 1-5")  # crontab numbers: Monday to Friday
    base = [*IPT, "--db", str(db), "--rules", str(rules)]
    create = [*base, "course", "create", "--client", "CL-9", "--start", "2026-03-09", "--time", "10:00",
              "--tz", "Europe/London", "--therapist", "T-9", "--id", "c-9", "--now", "2026-03-01T09:00"]  # fmt: skip
    subprocess.run(create, check=True, capture_output=True)

    def once(now: str) -> str:
        done = subprocess.run([*base, "daemon", "--once", "--now", now, "--sink", f"file:{out}"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "digest" not in once("2026-03-08T09:30")  # Sunday
    assert "1 digests" in once("2026-03-09T09:30")  # Monday, the daemon was down at 08:00
    assert "digests" not in once("2026-03-09T09:31")
    assert "digests" not in once("2026-03-09T23:59")
    assert "1 digests" in once("2026-03-10T08:00")
    digests = [e for e in lines(out) if e["type"] == "digest"]
    assert [(e["date"], e["late"], e["emitted_at"]) for e in digests] == [
        ("2026-03-09", True, "2026-03-09T09:30:00+00:00"),
        ("2026-03-10", False, "2026-03-10T08:00:00+00:00"),
    ]


def test_a_bad_digest_cron_is_a_rule_file_error(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, "0 25 * * mon-fri")
    done = subprocess.run([*IPT, "rules", "check", str(rules)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "clinic.yaml: digest.cron (line 19)" in done.stderr and "hour: '25' is not in 0-23" in done.stderr


def test_a_digest_lists_a_group_session_once_not_per_member(db_url: str, tmp_path: Path) -> None:
    """Group G1 (T-1) meets at 10:00 with three members; T-1 also has course c-1 at 14:00. The
    08:00 digest lists the group's session once and c-1's; none of the members'."""
    out = tmp_path / "out.jsonl"
    day = "2027-04-19"
    midnight = datetime.fromisoformat(day).replace(tzinfo=LONDON)
    with Workflow(db_url, clock=lambda: midnight - timedelta(days=20)) as wf:
        wf.create_group(protocol="ipt-g-8", therapist="T-1", start=day, time="10:00", tz="Europe/London",
                        group_id="G1", min=1)  # fmt: skip
        for i in range(3):
            wf.add_member("G1", client=f"CL-{i}", course_id=f"m{i}")
        wf.create_course(client="CL-9", start=day, time="14:00", tz="Europe/London", therapist="T-1", course_id="c-1")
        clinic = daily(wf)
        sink = FileSink(out)
        at = datetime.fromisoformat(f"{day}T08:00").replace(tzinfo=LONDON).astimezone(UTC)
        record_digests(wf.store, clinic, at)
        dispatch_due(wf.store, at, [sink])
        sink.close()
    digests = [e for e in lines(out) if e["type"] == "digest" and e["date"] == day]
    assert len(digests) == 1
    assert digests[0]["sessions"] == [
        {"course": None, "group": "G1", "number": 1, "start": f"{day}T10:00:00+01:00"},
        {"course": "c-1", "number": 1, "start": f"{day}T14:00:00+01:00"},
    ]
