"""The library as a host application sees it (issue 15): Python values as well as ISO text,
one message for a naive datetime, errors in the library's parameter names (never an option
such as ``--start``), typed results, unknown filter values refused, digests from
``Workflow.dispatch``; and the command line naming its options for the same errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ipt_workflow import InvalidInput, IptError, Workflow
from ipt_workflow.results import CourseSummary
from tests.e2e.conftest import run_ipt

T0 = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)  # a Friday
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def wf(tmp_path: Path) -> Any:
    with Workflow(str(tmp_path / "db.sqlite"), clock=lambda: T0) as w:
        yield w


def _error(call: Any) -> str:
    with pytest.raises(IptError) as info:
        call()
    return str(info.value)


# ---------------------------------------------------------------- values, not only text


def test_create_course_takes_date_time_and_zoneinfo_as_well_as_text(wf: Workflow) -> None:
    typed = wf.create_course(client="CL-1", start=date(2027, 1, 4), time=time(11, 0), tz=LONDON, course_id="A")
    text = wf.create_course(client="CL-2", start="2027-01-04", time="11:00", tz="Europe/London", course_id="B")
    assert (typed.start, typed.slot, typed.timezone) == (date(2027, 1, 4), time(11, 0), "Europe/London")
    assert [s.start for s in wf.plan("A").sessions] == [s.start for s in wf.plan("B").sessions]
    assert text.start == typed.start
    # an aware datetime is a date too (its own local date); "11:00:00" text is not HH:MM
    aware = wf.create_course(client="CL-3", start=datetime(2027, 1, 4, 8, tzinfo=LONDON), time=time(11, 0), tz=LONDON)
    assert aware.start == date(2027, 1, 4)


def test_apply_and_reminders_take_aware_datetimes_and_iso_text(wf: Workflow) -> None:
    wf.create_course(client="CL-1", start=date(2027, 1, 4), time=time(11, 0), tz=LONDON, course_id="A")
    done = wf.apply("A", "complete_intake", at="2027-01-01T09:30")  # local time of the course
    assert done.history[-1].at == datetime(2027, 1, 1, 9, 30, tzinfo=UTC)
    window = wf.reminders(start=datetime(2027, 1, 1, tzinfo=UTC), until="2027-02-01T00:00Z")
    assert window and all(datetime(2027, 1, 1, tzinfo=UTC) <= r.due < datetime(2027, 2, 1, tzinfo=UTC) for r in window)


NAIVE = datetime(2027, 1, 1, 8, 0)
NAIVE_TAIL = "'2027-01-01T08:00:00' has no UTC offset (give an aware datetime)"


def test_a_naive_datetime_is_refused_everywhere_with_the_same_message(wf: Workflow) -> None:
    wf.create_course(client="CL-1", start="2027-01-04", time="11:00", tz="Europe/London", course_id="A")
    calls = [
        ("at", lambda: wf.apply("A", "complete_intake", at=NAIVE)),
        ("at", lambda: wf.group_event("G1", "hold_session", at=NAIVE)),
        ("start", lambda: wf.reminders(start=NAIVE)),
        ("until", lambda: wf.reminders(until=NAIVE)),
        ("now", lambda: wf.dispatch([print], now=NAIVE)),
    ]
    for name, call in calls:
        assert _error(call) == f"{name}: {NAIVE_TAIL}"
    assert _error(lambda: wf.create_course(client="C", start=NAIVE, time="11:00", tz="UTC")) == f"start: {NAIVE_TAIL}"
    assert wf.course("A").version == 1  # nothing was applied


# ---------------------------------------------------------------- errors speak the library's names


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": "2027-13-01"}, "start: '2027-13-01' is not a date (YYYY-MM-DD)"),
        ({"time": "25:00"}, "time: '25:00' is not a time (HH:MM, 00:00 to 23:59)"),
        ({"time": time(11, 0, 30)}, "time: '11:00:30' is not a whole minute"),
        ({"tz": "Mars/Base"}, "tz: 'Mars/Base' is not an IANA time zone (such as Europe/London)"),
        ({"course_id": " "}, "course_id: empty (leave it out for a new random id)"),
    ],
)
def test_library_errors_name_its_parameters(wf: Workflow, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"client": "CL-1", "start": "2027-01-04", "time": "11:00", "tz": "Europe/London"}
    assert _error(lambda: wf.create_course(**{**args, **kwargs})) == message


def test_no_library_error_mentions_a_command_line_option(wf: Workflow, tmp_path: Path) -> None:
    wf.create_course(client="CL-1", start="2027-01-04", time="11:00", tz="Europe/London", course_id="A")
    group: dict[str, Any] = {"therapist": "th-1", "start": "2027-01-04", "time": "10:00", "tz": "UTC"}
    messages = [
        _error(lambda: wf.create_course(client="CL-2", start="2027-01-04", time="12:00", tz="UTC", course_id="A")),
        _error(lambda: wf.add_absence("th-1", start=date(2027, 2, 10), until=date(2027, 2, 1))),
        _error(lambda: wf.agenda(start="2027-02-10", until="2027-02-01")),
        _error(lambda: wf.slots("th-1", start="2027-01-04", weekdays="sun")),
        _error(lambda: wf.slots("th-1", start="2027-01-04", tz="Nowhere/Land")),
        _error(lambda: wf.create_group(protocol="ipt-g-8", min=9, max=8, **group)),
        _error(lambda: wf.create_group(protocol="ipt-16", **group)),
        _error(lambda: Workflow("nope://x")),
    ]
    assert messages[0] == "course_id: course 'A' already exists"
    assert messages[1] == "until: 2027-02-01 is before start 2027-02-10"
    assert messages[5] == "min: 9 is more than max 8"
    assert all("--" not in m for m in messages), messages


# ---------------------------------------------------------------- typed results, filters checked


def test_courses_are_typed_summaries(wf: Workflow) -> None:
    wf.create_course(client="CL-1", start="2027-01-04", time="11:00", tz="Europe/London", therapist="th-7",
                     course_id="A")  # fmt: skip
    [summary] = wf.courses(state="intake", therapist="th-7")
    assert isinstance(summary, CourseSummary)
    assert (summary.id, summary.state.value, summary.version, summary.created_at) == ("A", "intake", 1, T0)
    assert summary.model_dump(mode="json")["created_at"] == "2027-01-01T09:00:00Z"


def test_unknown_filter_values_are_refused_listing_the_valid_ones(wf: Workflow) -> None:
    assert _error(lambda: wf.reminders(status="sent")) == (
        "status: 'sent' is not one of pending, delivered, skipped, cancelled, failed"
    )
    assert _error(lambda: wf.courses(state="active")).startswith("state: 'active' is not one of intake, assessment,")
    with pytest.raises(InvalidInput):
        wf.courses(state="active")
    assert wf.reminders(status="delivered") == []


# ---------------------------------------------------------------- digests go through dispatch


def test_dispatch_emits_the_therapist_digests(tmp_path: Path) -> None:
    clock = [T0]
    with Workflow(str(tmp_path / "db.sqlite"), clock=lambda: clock[0]) as wf:
        wf.create_course(client="CL-1", start="2027-01-04", time="11:00", tz="Europe/London", therapist="th-1")
        events: list[dict[str, Any]] = []
        monday_8 = datetime(2027, 1, 4, 8, 0, 30, tzinfo=UTC)  # the clinic's digest cron: 08:00 Mon-Fri
        first = wf.dispatch([events.append], now=monday_8)
        digests = [e for e in events if e["type"] == "digest"]
        assert first.digests == 1 and [(d["therapist"], d["kind"]) for d in digests] == [("th-1", "digest")]
        wf.dispatch([events.append], now=monday_8)  # the same firing again: nothing new
        assert len([e for e in events if e["type"] == "digest"]) == 1


# ---------------------------------------------------------------- the command line names its options


def test_the_command_line_names_its_options_for_the_same_errors(tmp_path: Path) -> None:
    create = ("course", "create", "--client", "CL-1", "--start", "2027-01-04", "--tz", "Europe/London",
              "--now", "2027-01-01T09:00Z")  # fmt: skip
    bad_time = run_ipt(*create, "--time", "25:00", cwd=tmp_path)
    assert bad_time.returncode == 1
    assert bad_time.stderr == "error: --time: '25:00' is not a time (HH:MM, 00:00 to 23:59)\n"
    assert run_ipt(*create, "--time", "11:00", "--id", "A", cwd=tmp_path).returncode == 0
    again = run_ipt(*create, "--time", "11:00", "--id", "A", cwd=tmp_path)
    assert again.stderr == "error: --id: course 'A' already exists\n"
    away = run_ipt("therapist", "absence", "add", "th-1", "--from", "2027-02-10", "--until", "2027-02-01", cwd=tmp_path)
    assert away.stderr == "error: --until: 2027-02-01 is before --from 2027-02-10\n"
    # --start is the same option as --from where SPEC names it --from
    alias = run_ipt("therapist", "absence", "add", "th-1", "--start", "2027-02-10", "--until", "2027-02-01",
                    cwd=tmp_path)  # fmt: skip
    assert alias.stderr == away.stderr
    group = run_ipt("group", "create", "--protocol", "ipt-g-8", "--therapist", "th-1", "--start", "2027-01-04",
                    "--time", "10:00", "--tz", "UTC", "--min", "9", "--max", "8", cwd=tmp_path)  # fmt: skip
    assert group.stderr == "error: --min: 9 is more than --max 8\n"
    db = run_ipt("--db", "nope://x", "course", "list", cwd=tmp_path)
    assert db.stderr.startswith("error: --db: ")


def test_the_core_functions_take_the_same_names() -> None:
    from ipt_workflow import load_rules, new_course, simulate

    rules = load_rules()
    protocol = rules.protocol("ipt-16")
    course = new_course(protocol, rules.clinic, course_id="c", client="CL-1", therapist="th-1",
                        start=date(2027, 1, 4), time=time(11, 0), tz="Europe/London", now=T0)  # fmt: skip
    assert (course.slot, course.timezone) == (time(11, 0), "Europe/London")
    run = simulate(protocol, rules.clinic, start="2027-01-04", time="11:00", tz=LONDON, events=[])
    assert run.course.slot == time(11, 0) and run.course.timezone == "Europe/London"
    with pytest.raises(
        InvalidInput, match=r"^now: '2027-01-01T08:00:00' has no UTC offset \(give an aware datetime\)$"
    ):
        new_course(protocol, rules.clinic, course_id="c", client="CL-1", therapist="th-1",
                   start=date(2027, 1, 4), time=time(11, 0), tz="UTC", now=NAIVE)  # fmt: skip


def test_the_command_line_aliases(tmp_path: Path) -> None:
    now = ("--now", "2027-01-01T09:00Z")
    create = run_ipt("course", "create", "--client", "CL-1", "--start", "2027-01-04", "--time", "11:00",
                     "--tz", "Europe/London", "--id", "A", *now, cwd=tmp_path)  # fmt: skip
    assert create.returncode == 0, create.stderr
    stale = run_ipt("course", "event", "A", "complete_intake", "--expected-version", "2", *now, cwd=tmp_path)
    assert (stale.returncode, stale.stderr.count("is at version 1, not version 2")) == (1, 1)
    fresh = run_ipt("course", "event", "A", "complete_intake", "--expect-version", "1", *now, cwd=tmp_path)
    assert fresh.returncode == 0 and "version 2" in fresh.stdout
    by_from = run_ipt("reminders", "--from", "2027-01-02T00:00Z", "--json", cwd=tmp_path)
    by_start = run_ipt("reminders", "--start", "2027-01-02T00:00Z", "--json", cwd=tmp_path)
    assert by_from.stdout == by_start.stdout and by_from.returncode == 0
