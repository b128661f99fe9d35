"""Rule changes (SPEC §11): protocol versions side by side, ``--rules`` over the built-in
rules, every clinic setting used or refused, measures entered late."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from ipt_workflow import (
    Course,
    InvalidInput,
    RuleFileError,
    SessionStatus,
    StoreError,
    UnknownName,
    apply,
    load_rules,
    new_course,
    plan,
)
from ipt_workflow.core.lifecycle import facts
from ipt_workflow.core.model import BUILTIN_KINDS
from ipt_workflow.core.protocol import version_key
from ipt_workflow.rulebook.files import Rulebook, rules_listing
from ipt_workflow.services import build_course, protocol_of

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
BUILTIN = load_rules()
T0 = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ipt16(version: str, planned: int = 12) -> str:
    text = (RULES_DIR / "ipt-16.yaml").read_text(encoding="utf-8")
    text = text.replace('version: "1.0.0"', f'version: "{version}"')
    return re.sub(r"planned: 12", f"planned: {planned}", text, count=1)


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if fragment in line)


# ---------------------------------------------------------------- versions side by side


def test_versions_sort_in_semantic_version_order_not_string_order() -> None:
    versions = ["1.10.0", "1.2.0", "1.1.0", "1.1.0-rc.10", "1.1.0-rc.2", "1.1.0-alpha", "2.0.0", "1.0.0"]
    assert sorted(versions, key=version_key) == [
        "1.0.0", "1.1.0-alpha", "1.1.0-rc.2", "1.1.0-rc.10", "1.1.0", "1.2.0", "1.10.0", "2.0.0",
    ]  # fmt: skip


def test_several_versions_of_a_protocol_in_any_file_names(tmp_path: Path) -> None:
    (tmp_path / "new-ipt.yaml").write_text(ipt16("1.10.0", planned=14))
    (tmp_path / "older.yml").write_text(ipt16("1.2.0", planned=13))
    book = load_rules(tmp_path)
    assert list(book.versions["ipt-16"]) == ["1.0.0", "1.2.0", "1.10.0"]
    assert book.protocol("ipt-16").version == "1.10.0"  # the highest is the default
    assert book.protocols["ipt-16"].sessions.planned == 14
    assert book.sources["ipt-16"] == tmp_path / "new-ipt.yaml"
    assert book.protocol("ipt-16", "1.2.0").sessions.planned == 13
    assert book.named("ipt-16@1.0.0").sessions.planned == 12
    assert book.files[("ipt-16", "1.0.0")] == RULES_DIR / "ipt-16.yaml"
    assert [(p.id, p.version) for p in book.all_protocols()][:3] == [
        ("ipt-16", "1.0.0"), ("ipt-16", "1.2.0"), ("ipt-16", "1.10.0"),
    ]  # fmt: skip


def test_an_unknown_version_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "v11.yaml").write_text(ipt16("1.1.0"))
    book = load_rules(tmp_path)
    with pytest.raises(UnknownName) as info:
        book.named("ipt-16@9.9.9")
    assert str(info.value) == "unknown version '9.9.9' of protocol 'ipt-16' (known: 1.0.0, 1.1.0)"
    with pytest.raises(UnknownName, match=r"^unknown protocol 'ipt-99' \(known: ipt-16, "):
        book.named("ipt-99@1.0.0")
    with pytest.raises(UnknownName, match="unknown version '' of protocol 'ipt-16'"):
        book.named("ipt-16@")


def test_new_courses_take_the_highest_version_unless_told(tmp_path: Path) -> None:
    (tmp_path / "v11.yaml").write_text(ipt16("1.1.0", planned=14))
    book = load_rules(tmp_path)
    kw: dict[str, Any] = {"client": "CL-1", "start": "2027-01-04", "time": "10:00", "tz": "Europe/London", "now": T0}
    course, p = build_course(book, **kw)
    assert (course.protocol_version, course.planned_sessions, len(p.sessions)) == ("1.1.0", 14, 14)
    course, p = build_course(book, protocol_id="ipt-16@1.0.0", **kw)
    assert (course.protocol_version, course.planned_sessions, len(p.sessions)) == ("1.0.0", 12, 12)


def test_a_course_follows_the_version_it_pinned(tmp_path: Path) -> None:
    (tmp_path / "v11.yaml").write_text(ipt16("1.1.0", planned=14))
    newer = load_rules(tmp_path)
    old = new_course(
        BUILTIN.protocol("ipt-16"), BUILTIN.clinic, course_id="c1", client="CL-1", therapist="T-1",
        start=date(2027, 1, 4), slot=time(10), timezone="Europe/London", now=T0,
    )  # fmt: skip
    assert protocol_of(newer, old).version == "1.0.0"
    assert len(plan(old, protocol_of(newer, old), newer.clinic).sessions) == 12
    pinned_new = old.model_copy(update={"id": "c2", "protocol_version": "1.1.0"})
    with pytest.raises(StoreError) as info:
        protocol_of(BUILTIN, pinned_new)
    assert str(info.value) == (
        "course 'c2' follows ipt-16 1.1.0, but the rules directory has versions 1.0.0: "
        "load the rules it was created with"
    )


def test_a_version_with_a_space_or_an_at_sign_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(ipt16("1.0@x"))
    with pytest.raises(RuleFileError, match=rf"^{re.escape(str(path))}: version \(line 5\): "):
        load_rules(tmp_path)


# ---------------------------------------------------------------- --rules DIR over the built-in rules


def test_a_directory_with_only_clinic_yaml_keeps_the_builtin_protocols(tmp_path: Path) -> None:
    text = (RULES_DIR / "clinic.yaml").read_text().replace("timezone: Europe/London", "timezone: Europe/Oslo")
    (tmp_path / "clinic.yaml").write_text(text)
    book = load_rules(tmp_path)
    assert book.protocols.keys() == BUILTIN.protocols.keys()
    assert book.clinic.timezone == "Europe/Oslo" and book.clinic_file == tmp_path / "clinic.yaml"
    assert book.sources == BUILTIN.sources


def test_a_file_replaces_the_builtin_protocol_of_its_id_and_version(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(ipt16("1.0.0", planned=15))
    book = load_rules(tmp_path)
    assert list(book.versions["ipt-16"]) == ["1.0.0"]
    assert book.protocol("ipt-16").sessions.planned == 15
    assert book.sources["ipt-16"] == tmp_path / "mine.yaml"
    assert book.clinic_file == RULES_DIR / "clinic.yaml"


def test_two_files_with_one_id_and_version_are_refused_naming_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ipt16("1.1.0"))
    (tmp_path / "b.yaml").write_text(ipt16("1.1.0", planned=13))
    with pytest.raises(RuleFileError) as info:
        load_rules(tmp_path)
    line = line_of(tmp_path / "b.yaml", 'version: "1.1.0"')
    assert info.value.problems == [
        f"{tmp_path / 'b.yaml'}: version (line {line}): protocol 'ipt-16' version '1.1.0' is also defined in "
        f"{tmp_path / 'a.yaml'}"
    ]


def test_the_listing_names_every_version_and_the_policy_with_their_files(tmp_path: Path) -> None:
    (tmp_path / "v2.yaml").write_text(ipt16("2.0.0"))
    listing = rules_listing(tmp_path)
    assert listing["directory"] == str(tmp_path)
    assert listing["clinic"] == {"source": str(RULES_DIR / "clinic.yaml")}
    rows = [(p["id"], p["version"], p["default"], p["source"]) for p in listing["protocols"]]
    assert rows[:2] == [
        ("ipt-16", "1.0.0", False, str(RULES_DIR / "ipt-16.yaml")),
        ("ipt-16", "2.0.0", True, str(tmp_path / "v2.yaml")),
    ]
    assert {r[0] for r in rows} == set(BUILTIN.protocols)


def test_a_rulebook_built_by_hand_defaults_to_its_highest_version() -> None:
    p = BUILTIN.protocol("ipt-16")
    newer = p.model_copy(update={"version": "1.0.10"})
    book = Rulebook(versions={"ipt-16": {"1.0.10": newer, "1.0.0": p}}, clinic=BUILTIN.clinic)
    assert book.protocol("ipt-16") is newer and book.protocols["ipt-16"] is newer and book.sources == {}
    assert [x.version for x in book.all_protocols()] == ["1.0.0", "1.0.10"]


# ---------------------------------------------------------------- every clinic setting used or refused


CLINIC_TEXT = (RULES_DIR / "clinic.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("pattern", "replacement", "location"),
    [
        (r"  no_show_after: 15m", "  no_show_after: banana", "attendance.no_show_after"),
        (r"  no_show_after: 15m", "  no_show_after: 15", "attendance.no_show_after"),
        (r"  late_cancel_window: 24h", "  late_cancel_window: [24h]", "attendance.late_cancel_window"),
        (r"  attendance_review_after: 2 ", "  attendance_review_after: two ", "attendance.attendance_review_after"),
        (r"reminder_leads: \[72h, 24h\]", "reminder_leads: 24h", "reminder_leads"),
        (r"session_buffer: 0m", "session_buffer: 10", "session_buffer"),
        (r"working_days: .*", "working_days: mon-fri", "working_days"),
    ],
)
def test_a_clinic_setting_of_the_wrong_type_is_a_load_error_at_its_line(
    tmp_path: Path, pattern: str, replacement: str, location: str
) -> None:
    text, n = re.subn(pattern, replacement, CLINIC_TEXT)
    assert n == 1
    path = tmp_path / "clinic.yaml"
    path.write_text(text)
    with pytest.raises(RuleFileError) as info:
        load_rules(tmp_path)
    [problem] = info.value.problems
    line = line_of(path, replacement.strip().split(":")[0] + ":")
    assert problem.startswith(f"{path}: {location} (line {line}): "), problem


def test_attendance_unrecorded_is_a_builtin_therapist_kind() -> None:
    assert BUILTIN_KINDS["attendance_unrecorded"] == "therapist"
    assert BUILTIN.protocol("ipt-16").kinds["attendance_unrecorded"] == "therapist"


class Run:
    """One ipt-16 course, Mondays 10:00 from 2027-01-04 (London), intake completed."""

    def __init__(self, rules: Rulebook = BUILTIN) -> None:
        self.rules = rules
        self.protocol = rules.protocol("ipt-16")
        self.course: Course = new_course(
            self.protocol, rules.clinic, course_id="c1", client="CL-1", therapist="T-1",
            start=date(2027, 1, 4), slot=time(10), timezone="Europe/London", now=T0,
        )  # fmt: skip
        self("complete_intake", T0)

    def __call__(self, event: str, at: datetime, data: dict[str, Any] | None = None) -> Any:
        self.course, effects = apply(self.course, event, at, self.protocol, self.rules.clinic, data)
        return effects

    def unrecorded(self) -> dict[int, datetime]:
        reminders = plan(self.course, self.protocol, self.rules.clinic).reminders
        return {r.session: r.due for r in reminders if r.kind == "attendance_unrecorded"}  # type: ignore[misc]


def test_every_planned_session_has_an_attendance_unrecorded_alert_at_its_end_plus_no_show_after() -> None:
    run = Run()
    alerts = run.unrecorded()
    planned = plan(run.course, run.protocol, BUILTIN.clinic).sessions
    assert sorted(alerts) == [s.number for s in planned] == list(range(1, 13))
    assert alerts[1] == utc(2027, 1, 4, 11, 5)  # 10:00 + 50 min + 15 min, London in winter
    reminders = plan(run.course, run.protocol, BUILTIN.clinic).reminders
    assert {r.audience for r in reminders if r.kind == "attendance_unrecorded"} == {"therapist"}


@pytest.mark.parametrize("event", ["hold_session", "miss_session"])
def test_attendance_unrecorded_is_cancelled_once_the_session_is_recorded(event: str) -> None:
    run = Run()

    def alert_of(number: int) -> str:
        reminders = plan(run.course, run.protocol, BUILTIN.clinic).reminders
        return next(r.id for r in reminders if r.kind == "attendance_unrecorded" and r.session == number)

    first = alert_of(1)
    effects = run(event, utc(2027, 1, 4, 10, 55))  # before it is due (11:05)
    assert first in effects.cancelled
    assert 1 not in run.unrecorded() and 2 in run.unrecorded()
    second = alert_of(2)
    effects = run(event, utc(2027, 1, 12, 9))  # after it was due: if not yet sent, it is not true now
    assert second in effects.cancelled
    assert 2 not in run.unrecorded()


def test_a_cancelled_session_loses_its_attendance_unrecorded_alert() -> None:
    run = Run()
    effects = run("cancel_session", utc(2027, 1, 2, 9))
    assert 1 not in run.unrecorded()
    assert any(r.startswith("rem_") for r in effects.cancelled)


def test_no_show_after_comes_from_the_clinic_policy(tmp_path: Path) -> None:
    (tmp_path / "clinic.yaml").write_text(CLINIC_TEXT.replace("no_show_after: 15m", "no_show_after: 2h"))
    run = Run(load_rules(tmp_path))
    assert run.unrecorded()[1] == utc(2027, 1, 4, 12, 50)


def test_a_paused_course_has_no_attendance_unrecorded_alerts() -> None:
    run = Run()
    run("pause", utc(2027, 1, 2, 9))
    assert run.unrecorded() == {}


def test_a_due_attendance_unrecorded_alert_stays_when_the_course_is_paused() -> None:
    run = Run()
    reminders = plan(run.course, run.protocol, BUILTIN.clinic).reminders
    by_session = {r.session: r.id for r in reminders if r.kind == "attendance_unrecorded"}
    effects = run("pause", utc(2027, 1, 5, 9))  # session 1 ended unrecorded; its alert was due at 11:05
    assert by_session[1] not in effects.cancelled  # still true: it goes out
    assert by_session[2] in effects.cancelled  # not due: the paused course plans no session 2


def test_late_cancel_window_comes_from_the_clinic_policy(tmp_path: Path) -> None:
    (tmp_path / "clinic.yaml").write_text(CLINIC_TEXT.replace("late_cancel_window: 24h", "late_cancel_window: 48h"))
    wide = load_rules(tmp_path)
    for rules, late in ((BUILTIN, False), (wide, True)):
        run = Run(rules)
        run("miss_session", utc(2027, 1, 4, 10, 30))
        run("cancel_session", utc(2027, 1, 9, 12))  # session 2 starts in 46 h
        assert run.course.history[-1].data == ({"number": 2, "late": True} if late else {})
        alerts = [a.kind for a in run.course.alerts if a.audience == "therapist"]
        assert alerts == (["attendance_review"] if late else [])


# ---------------------------------------------------------------- measures


def phq9(score: int, item9: int = 0) -> dict[str, Any]:
    return {"instrument": "phq9", "score": score, "item9": item9}


def test_a_phq9_whose_item9_exceeds_its_total_is_refused() -> None:
    run = Run()
    with pytest.raises(InvalidInput) as info:
        run("record_measure", utc(2027, 1, 4, 11), phq9(0, 3))
    assert str(info.value) == (
        "event 'record_measure' data: item9: 3 is more than the total score 0 (item 9 counts in it)"
    )
    run("record_measure", utc(2027, 1, 4, 11), phq9(3, 3))  # equal is fine
    assert run.course.measurements[-1].item9 == 3


def test_a_measure_may_be_entered_after_a_later_change_and_sits_in_time_order() -> None:
    run = Run()
    run("hold_session", utc(2027, 1, 4, 10, 50))
    run("record_measure", utc(2027, 1, 4, 12), phq9(20))
    run("hold_session", utc(2027, 1, 11, 10, 50))
    run("hold_session", utc(2027, 1, 18, 10, 50))
    run("hold_session", utc(2027, 3, 8, 10, 50), {"number": 9})
    run("record_measure", utc(2027, 3, 8, 12), phq9(8))
    effects = run("record_measure", utc(2027, 2, 1, 12), phq9(15, 1))  # filled in on 1 Feb, entered now
    assert [m.score for m in run.course.measurements] == [20, 15, 8]
    late = run.course.measurements[1]
    assert late.at == utc(2027, 2, 1, 12) and late.session == 3  # the last session held by then
    assert run.course.history[-1].event == "record_measure" and run.course.history[-1].at == utc(2027, 2, 1, 12)
    # rules see the measure this event recorded, and the series in time order
    assert [r.kind for r in effects.added] == ["safety_alert"]
    f = facts(run.course, run.protocol, BUILTIN.clinic, "hold_session", {}, utc(2027, 3, 9))
    assert (f["phq9_baseline"], f["phq9_latest"], f["phq9_reduction"]) == (20, 8, 0.6)


def test_other_events_are_still_refused_before_the_last_change() -> None:
    run = Run()
    run("record_measure", utc(2027, 1, 3, 12), phq9(20))
    run("record_measure", utc(2027, 1, 2, 12), phq9(21))  # late: before the last change
    # the last change is still 3 Jan 12:00 (the history is not in time order)
    with pytest.raises(InvalidInput, match=r"at: 2027-01-03T11:00:00\+00:00 is before the course's last change "
                                           r"\(2027-01-03T12:00:00\+00:00\)"):  # fmt: skip
        run("pause", utc(2027, 1, 3, 11))


def test_a_measure_before_the_course_was_created_is_refused() -> None:
    run = Run()
    with pytest.raises(InvalidInput) as info:
        run("record_measure", T0 - timedelta(minutes=1), phq9(10))
    assert str(info.value) == (
        "at: 2027-01-01T08:59:00+00:00 is before the course was created (2027-01-01T09:00:00+00:00)"
    )
    run("record_measure", T0, phq9(10))
    assert run.course.measurements[0].session is None
    assert all(s.status is SessionStatus.planned for s in plan(run.course, run.protocol, BUILTIN.clinic).sessions)
