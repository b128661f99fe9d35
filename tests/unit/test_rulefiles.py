"""Rule files (SPEC §4): every built-in file loads, and each kind of broken file is refused
whole with ``FILE: location: message`` lines.

Broken files are built by copying ``rules/ipt-16.yaml`` (or ``clinic.yaml``) into
``tmp_path`` and editing the text. Rules are appended at the end of the ``rules:`` list and
locations are computed from the edited text, so the tests do not depend on the exact
content of the built-in files.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

import ipt_workflow
from ipt_workflow import ClinicPolicy, Protocol, RuleFileError, load_file, load_rules
from ipt_workflow.rulebook.files import builtin_rules_dir

RULES = Path(__file__).resolve().parents[2] / "rules"
PROTOCOL_IDS = {"ipt-16", "ipt-b-8", "ipt-a-12", "ipt-g-8", "ipt-m"}


# ---------------------------------------------------------------- helpers


def ipt16_text() -> str:
    return (RULES / "ipt-16.yaml").read_text(encoding="utf-8")


def clinic_text() -> str:
    return (RULES / "clinic.yaml").read_text(encoding="utf-8")


def write(tmp_path: Path, text: str, name: str = "ipt-16.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    """The problem lines of loading ``path``, which must fail with RuleFileError."""
    with pytest.raises(RuleFileError) as info:
        load_file(path)
    problems = info.value.problems
    assert problems, "a RuleFileError must list at least one problem"
    assert str(info.value) == "\n".join(problems)
    for line in problems:
        assert "\n" not in line
        assert line.startswith(f"{path}: "), line
    return problems


def only_problem(path: Path) -> str:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


def line_no(text: str, fragment: str) -> int:
    """The 1-based number of the only line of ``text`` that contains ``fragment``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(hits) == 1, f"{fragment!r} is on lines {hits}"
    return hits[0]


def replace_line(text: str, pattern: str, new: str) -> str:
    """Replace the one line matching ``pattern`` (a regex for a whole line) by ``new``."""
    out, n = re.subn(rf"^{pattern}$", new, text, flags=re.MULTILINE)
    assert n == 1, f"{pattern!r} matched {n} lines of the rule file"
    return out


def append_rule(text: str, rule: str) -> tuple[str, int]:
    """``text`` with ``rule`` (YAML of one list item, 4-space body) appended to ``rules:``;
    returns the new text and the new rule's index."""
    top = yaml.compose(text)
    assert isinstance(top, yaml.MappingNode)
    assert top.value[-1][0].value == "rules", "rules: must be the last key of the file"
    index = len(yaml.safe_load(text)["rules"])
    return text.rstrip("\n") + "\n" + rule.strip("\n") + "\n", index


def rule_yaml(
    rule_id: str = "test.extra",
    trigger: str = "[miss_session]",
    when: str | None = '"consecutive_missed >= 1"',
    emit: str = "attendance_review",
) -> str:
    lines = [f"  - id: {rule_id}", f"    trigger: {trigger}"]
    if when is not None:
        lines.append(f"    when: {when}")
    lines.append(f"    actions: [{{emit: {emit}}}]")
    return "\n".join(lines)


# ---------------------------------------------------------------- the built-in files


def test_builtin_rules_dir_is_the_checkout_rules() -> None:
    assert builtin_rules_dir().resolve() == RULES.resolve()


def test_every_builtin_file_loads_with_schema_version_1() -> None:
    files = sorted(RULES.glob("*.yaml"))
    assert {f.name for f in files} >= {f"{p}.yaml" for p in PROTOCOL_IDS} | {"clinic.yaml"}
    protocols: dict[str, Protocol] = {}
    clinics = []
    for path in files:
        loaded = load_file(path)
        assert loaded.schema_version == 1, path
        if isinstance(loaded, Protocol):
            assert path.stem == loaded.id, f"{path.name} defines {loaded.id}"
            protocols[loaded.id] = loaded
        else:
            assert isinstance(loaded, ClinicPolicy)
            clinics.append(path.name)
    assert set(protocols) >= PROTOCOL_IDS
    assert clinics == ["clinic.yaml"]


def test_load_rules_default_is_the_builtin_rulebook() -> None:
    book = ipt_workflow.load_rules()
    assert set(book.protocols) >= PROTOCOL_IDS
    assert isinstance(book.clinic, ClinicPolicy)
    assert book.clinic.schema_version == 1
    assert book.clinic.timezone == "Europe/London"
    for pid in PROTOCOL_IDS:
        assert book.protocol(pid).id == pid
        assert book.sources[pid].name == f"{pid}.yaml"
    with pytest.raises(ipt_workflow.UnknownName, match=r"unknown protocol 'ipt-99' \(known: .*ipt-16"):
        book.protocol("ipt-99")


def test_builtin_ipt16_is_the_documented_protocol() -> None:
    p = load_file(RULES / "ipt-16.yaml")
    assert isinstance(p, Protocol)
    assert (p.sessions.min, p.sessions.max) == (12, 16)
    assert p.cadence_weeks == 1
    assert p.duration_minutes == 50
    assert (p.phases.assessment.min, p.phases.assessment.max) == (1, 3)
    assert 2 <= p.phases.termination <= 4
    assert p.focus_limit == 2
    # the rules SPEC §4 asks a protocol to state as data
    emitted = {a.emit for r in p.rules for a in r.actions if a.emit}
    assert {"safety_alert", "non_response_review", "attendance_review", "discharge_review"} <= emitted
    assert any(a.transition == "begin_termination" for r in p.rules for a in r.actions)


def test_builtin_clinic_policy() -> None:
    c = load_file(RULES / "clinic.yaml")
    assert isinstance(c, ClinicPolicy)
    assert c.holidays is not None and c.holidays.country == "GB"
    assert c.is_closed(date(2026, 12, 25))
    assert not c.is_closed(date(2026, 3, 3))
    assert c.attendance.attendance_review_after == 2
    assert c.attendance.discharge_review_after == 3


# ---------------------------------------------------------------- broken protocol files


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = ipt16_text()
    text = replace_line(text, r"cadence_weeks: .*", "cadence_weeks: 1\n\tbroken: 2")
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: line {line_no(text, 'broken: 2')}, column 1: "), problem
    assert "\\t" in problem or "tab" in problem.lower() or "token" in problem


def test_wrong_type(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"cadence_weeks: .*", 'cadence_weeks: "weekly"')
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "cadence_weeks:")
    assert problem.startswith(f"{path}: cadence_weeks (line {line}): "), problem
    assert "integer" in problem


def test_unknown_field(tmp_path: Path) -> None:
    text = ipt16_text() + "focus_limits: 3\n"
    path = write(tmp_path, text)
    assert only_problem(path) == f"{path}: focus_limits (line {line_no(text, 'focus_limits')}): unknown field"


def test_unknown_field_in_a_nested_mapping(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"sessions: .*", "sessions: {min: 12, planned: 12, max: 16, maximum: 20}")
    path = write(tmp_path, text)
    line = line_no(text, "maximum: 20")
    assert only_problem(path) == f"{path}: sessions.maximum (line {line}): unknown field"


def test_missing_required_field(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"cadence_weeks: .*", "")
    path = write(tmp_path, text)
    assert only_problem(path) == f"{path}: cadence_weeks: required field is missing"


def test_bad_cel_syntax_in_when(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(when='"consecutive_missed == == 2"'))
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "consecutive_missed == == 2")
    assert problem.startswith(f"{path}: rules[{index}].when (line {line}): invalid CEL"), problem
    assert "consecutive_missed == == 2" in problem


def test_unknown_fact_in_when(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(when='"consecutive_misses >= 2"'))
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "consecutive_misses >= 2")
    assert problem.startswith(f"{path}: rules[{index}].when (line {line}): unknown name 'consecutive_misses'"), problem
    assert "consecutive_missed" in problem  # the known facts are listed


def test_unknown_fact_in_guard(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"guards:\s*", 'guards:\n  complete: "sesions_held > 0"')
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "sesions_held > 0")
    assert problem.startswith(f"{path}: guards.complete (line {line}): unknown name 'sesions_held'"), problem


def test_guard_for_an_unknown_transition(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"guards:\s*", 'guards:\n  graduate: "sessions_held > 0"')
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "graduate:")
    assert problem.startswith(f"{path}: guards.graduate (line {line}): no transition 'graduate'"), problem


def test_unknown_function_in_when(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(when='"shell(state)"'))
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "shell(state)")
    assert problem.startswith(f"{path}: rules[{index}].when (line {line}): unknown function 'shell'"), problem


def test_duplicate_rule_id(tmp_path: Path) -> None:
    text = ipt16_text()
    first_id = yaml.safe_load(text)["rules"][0]["id"]
    text, index = append_rule(text, rule_yaml(rule_id=first_id))
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = len(text.splitlines()) - 3  # the appended rule's "- id:" line
    assert problem == f"{path}: rules[{index}].id (line {line}): duplicate rule id '{first_id}' (also rules[0])"


def test_unknown_event_in_trigger(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(trigger="[miss_sesion]"))
    path = write(tmp_path, text)
    line = line_no(text, "[miss_sesion]")
    problem = only_problem(path)
    assert problem.startswith(f"{path}: rules[{index}].trigger (line {line}): unknown event 'miss_sesion'"), problem


def test_unknown_event_in_transition_action(tmp_path: Path) -> None:
    rule = "  - id: test.jump\n    trigger: [hold_session]\n    actions: [{transition: graduate}]"
    text, index = append_rule(ipt16_text(), rule)
    path = write(tmp_path, text)
    line = line_no(text, "{transition: graduate}")
    problem = only_problem(path)
    assert problem == f"{path}: rules[{index}].actions[0].transition (line {line}): unknown event 'graduate'"


def test_unknown_reminder_kind_in_emit(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(emit="discharge_reveiw"))
    path = write(tmp_path, text)
    line = line_no(text, "discharge_reveiw")
    problem = only_problem(path)
    assert problem == f"{path}: rules[{index}].actions[0].emit (line {line}): unknown reminder kind 'discharge_reveiw'"


def test_a_protocol_may_add_its_own_reminder_kind(tmp_path: Path) -> None:
    text = replace_line(
        ipt16_text(), r"reminders:\s*", "reminders:\n  - {kind: supervisor_call, audience: therapist, leads: [24h]}"
    )
    text, _ = append_rule(text, rule_yaml(emit="supervisor_call"))
    loaded = load_file(write(tmp_path, text))
    assert isinstance(loaded, Protocol)
    assert loaded.kinds["supervisor_call"] == "therapist"


def test_key_given_twice(tmp_path: Path) -> None:
    text = ipt16_text() + "focus_limit: 5\n"
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: line {len(text.splitlines())}, column 1: "), problem
    assert "'focus_limit' is given twice" in problem


def test_key_given_twice_in_a_nested_mapping(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"sessions: .*", "sessions: {min: 12, planned: 12, max: 16, min: 3}")
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: line {line_no(text, 'min: 3')}, column "), problem
    assert "'min' is given twice" in problem


def test_schema_version_2(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"schema_version: 1", "schema_version: 2")
    path = write(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "schema_version:")
    assert problem.startswith(f"{path}: schema_version (line {line}): "), problem
    assert "schema_version 2 is not supported" in problem


def test_condition_that_is_not_boolean(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(when='"sessions_held + 1"'))
    path = write(tmp_path, text)
    line = line_no(text, "sessions_held + 1")
    problem = only_problem(path)
    assert problem == f"{path}: rules[{index}].when (line {line}): 'sessions_held + 1' must be true or false, not int"


def test_type_error_in_cel(tmp_path: Path) -> None:
    text, index = append_rule(ipt16_text(), rule_yaml(when='"state > 3"'))
    path = write(tmp_path, text)
    line = line_no(text, "state > 3")
    problem = only_problem(path)
    assert problem.startswith(f"{path}: rules[{index}].when (line {line}): 'state > 3' cannot be evaluated"), problem


def test_a_guard_that_is_not_boolean(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"guards:\s*", 'guards:\n  complete: "focus"')
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: guards.complete (line {line_no(text, 'complete:')}): "), problem
    assert "must be true or false" in problem


def test_yaml_12_booleans_in_a_protocol(tmp_path: Path) -> None:
    """``once: yes`` is the string 'yes' under YAML 1.2, so it is refused, not read as true."""
    text, index = append_rule(ipt16_text(), rule_yaml() + "\n    once: yes")
    path = write(tmp_path, text)
    line = line_no(text, "once: yes")
    assert only_problem(path).startswith(f"{path}: rules[{index}].once (line {line}): ")


def test_several_problems_of_fields_are_all_reported(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"cadence_weeks: .*", 'cadence_weeks: "weekly"') + "focus_limits: 3\n"
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: cadence_weeks (line ") for p in problems), problems
    assert any(p.startswith(f"{path}: focus_limits (line ") for p in problems), problems


def test_every_problem_of_the_rules_is_reported(tmp_path: Path) -> None:
    text, first = append_rule(ipt16_text(), rule_yaml(rule_id="test.one", trigger="[miss_sesion]"))
    text, second = append_rule(text, rule_yaml(rule_id="test.two", emit="no_such_kind"))
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 2, problems
    assert any(p.startswith(f"{path}: rules[{first}].trigger (line ") for p in problems), problems
    assert any(p.startswith(f"{path}: rules[{second}].actions[0].emit (line ") for p in problems), problems


def test_when_and_guard_problems_are_reported_together(tmp_path: Path) -> None:
    text = replace_line(ipt16_text(), r"guards:\s*", 'guards:\n  complete: "sesions_held > 0"')
    text, index = append_rule(text, rule_yaml(when='"state > 3"'))
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: guards.complete (line ") for p in problems), problems
    assert any(p.startswith(f"{path}: rules[{index}].when (line ") for p in problems), problems


def test_empty_file_and_a_list(tmp_path: Path) -> None:
    empty = write(tmp_path, "", "empty.yaml")
    assert only_problem(empty).startswith(f"{empty}: (top): a rule file must be a mapping")
    listed = write(tmp_path, "- 1\n- 2\n", "list.yaml")
    assert only_problem(listed).startswith(f"{listed}: (top): a rule file must be a mapping")


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert only_problem(missing).startswith(f"{missing}: (file): ")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"id: \xff\xfe\n")
    assert only_problem(binary) == f"{binary}: (file): not UTF-8 text"


def test_python_tags_are_refused(tmp_path: Path) -> None:
    """A safe loader: no Python objects from a rule file."""
    path = write(tmp_path, ipt16_text() + "x: !!python/object/apply:os.system ['true']\n")
    problem = only_problem(path)
    assert re.match(rf"{re.escape(str(path))}: line \d+, column \d+: ", problem), problem


@pytest.mark.parametrize(
    ("pattern", "new", "location"),
    [
        (r"follow_ups: .*", "follow_ups: [12y]", "follow_ups"),
        (
            r"  - \{kind: termination_prep.*",
            "  - {kind: termination_prep, audience: therapist, leads: [2x]}",
            "reminders",
        ),
    ],
    ids=["follow_ups", "reminder-leads"],
)
def test_bad_duration_is_a_rule_file_error(tmp_path: Path, pattern: str, new: str, location: str) -> None:
    text = replace_line(ipt16_text(), pattern, new)
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: {location}"), problem
    assert f"(line {line_no(text, new.strip())})" in problem, problem
    assert "is not a duration" in problem


# ---------------------------------------------------------------- clinic.yaml


def write_clinic(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clinic.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_country_no_stays_the_string_no(tmp_path: Path) -> None:
    """YAML 1.2 booleans: ``NO`` is Norway, not false."""
    text = replace_line(clinic_text(), r"holidays: .*", "holidays: {country: NO}")
    loaded = load_file(write_clinic(tmp_path, text))
    assert isinstance(loaded, ClinicPolicy)
    assert loaded.holidays is not None
    assert loaded.holidays.country == "NO"
    assert loaded.is_closed(date(2026, 5, 17))  # Norway's Constitution Day
    assert not loaded.is_closed(date(2026, 5, 18))


def test_block_style_country_no(tmp_path: Path) -> None:
    text = replace_line(clinic_text(), r"holidays: .*", "holidays:\n  country: NO\n  subdivision: null")
    loaded = load_file(write_clinic(tmp_path, text))
    assert isinstance(loaded, ClinicPolicy)
    assert loaded.holidays is not None and loaded.holidays.country == "NO"


def test_unknown_country(tmp_path: Path) -> None:
    text = replace_line(clinic_text(), r"holidays: .*", "holidays: {country: XX}")
    path = write_clinic(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "country: XX")
    assert problem.startswith(f"{path}: holidays.country (line {line}): unknown country 'XX'"), problem


def test_unknown_subdivision(tmp_path: Path) -> None:
    text = replace_line(clinic_text(), r"holidays: .*", "holidays: {country: GB, subdivision: ZZZ}")
    path = write_clinic(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "subdivision: ZZZ")
    assert problem.startswith(f"{path}: holidays.subdivision (line {line}): "), problem
    assert "ZZZ" in problem
    assert "ENG" in problem  # the known subdivisions are listed


def test_working_day_typo(tmp_path: Path) -> None:
    text = replace_line(clinic_text(), r"working_days: .*", "working_days: [mon, tues]")
    path = write_clinic(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: working_days[1] (line {line_no(text, 'working_days:')}): "), problem


def test_quoted_impossible_closure_date(tmp_path: Path) -> None:
    text = replace_line(clinic_text(), r"closures: .*", 'closures: ["2026-02-30"]')
    path = write_clinic(tmp_path, text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}: closures (line {line_no(text, 'closures:')}): "), problem


def test_unquoted_impossible_closure_date(tmp_path: Path) -> None:
    text = replace_line(clinic_text(), r"closures: .*", "closures: [2026-02-30]")
    path = write_clinic(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, "closures:")
    assert f"line {line}" in problem and "'2026-02-30' is not a real date" in problem, problem


@pytest.mark.parametrize(
    ("pattern", "new", "location", "value"),
    [
        (r"timezone: .*", "timezone: Mars/Base", "timezone", "Mars/Base"),
        pytest.param(
            r"timezone: .*",
            "timezone: Europe",  # a directory of zones, not a zone
            "timezone",
            "Europe",
            id="zone-directory",
        ),
        (r"working_hours: .*", 'working_hours: {start: "08:00", end: "25:00"}', "working_hours.end", "25:00"),
        (r"reminder_leads: .*", "reminder_leads: [72x]", "reminder_leads", "72x"),
        (r"quiet_hours: .*", 'quiet_hours: {start: "9pm", end: "08:00"}', "quiet_hours.start", "9pm"),
    ],
    ids=["timezone", "zone-directory", "working_hours", "reminder_leads", "quiet_hours"],
)
def test_clinic_value_errors_are_rule_file_errors(
    tmp_path: Path, pattern: str, new: str, location: str, value: str
) -> None:
    text = replace_line(clinic_text(), pattern, new)
    path = write_clinic(tmp_path, text)
    problem = only_problem(path)
    line = line_no(text, new.split("\n")[0])
    assert problem.startswith(f"{path}: {location} (line {line}): "), problem
    assert value in problem


# ---------------------------------------------------------------- load_rules(dir)


def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def test_load_rules_from_a_copy(tmp_path: Path) -> None:
    book = load_rules(copy_rules(tmp_path))
    assert set(book.protocols) >= PROTOCOL_IDS
    assert book.sources["ipt-16"] == tmp_path / "rules" / "ipt-16.yaml"


def test_load_rules_lists_the_problems_of_every_bad_file(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    bad16 = rules / "ipt-16.yaml"
    bad16.write_text(replace_line(bad16.read_text(), r"cadence_weeks: .*", 'cadence_weeks: "weekly"'))
    bad_b = rules / "ipt-b-8.yaml"
    bad_b.write_text(replace_line(bad_b.read_text(), r"schema_version: 1", "schema_version: 2"))
    bad_clinic = rules / "clinic.yaml"
    bad_clinic.write_text(replace_line(bad_clinic.read_text(), r"holidays: .*", "holidays: {country: XX}"))
    with pytest.raises(RuleFileError) as info:
        load_rules(rules)
    problems = info.value.problems
    assert any(p.startswith(f"{bad16}: cadence_weeks (line ") for p in problems), problems
    assert any(p.startswith(f"{bad_b}: schema_version (line ") for p in problems), problems
    assert any(p.startswith(f"{bad_clinic}: holidays.country (line ") for p in problems), problems
    assert len(problems) == 3, problems


def test_load_rules_refuses_one_protocol_version_defined_twice(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    shutil.copy(rules / "ipt-16.yaml", rules / "zz-copy.yaml")  # sorts after ipt-16.yaml
    line = line_no((rules / "zz-copy.yaml").read_text(), 'version: "1.0.0"')
    with pytest.raises(RuleFileError) as info:
        load_rules(rules)
    assert info.value.problems == [
        f"{rules / 'zz-copy.yaml'}: version (line {line}): protocol 'ipt-16' version '1.0.0' is also defined in "
        f"{rules / 'ipt-16.yaml'}"
    ]


def test_load_rules_without_clinic_falls_back_to_the_builtin_policy(tmp_path: Path) -> None:
    rules = tmp_path / "only-one"
    rules.mkdir()
    shutil.copy(RULES / "ipt-16.yaml", rules / "ipt-16.yaml")
    book = load_rules(rules)
    assert set(book.protocols) >= PROTOCOL_IDS  # the built-in protocols, this one replaced
    assert book.sources["ipt-16"] == rules / "ipt-16.yaml"
    assert book.sources["ipt-b-8"] == RULES / "ipt-b-8.yaml"
    assert book.clinic_file == RULES / "clinic.yaml"
    builtin = load_file(RULES / "clinic.yaml")
    assert book.clinic.model_dump() == builtin.model_dump()


def test_load_rules_with_an_own_clinic(tmp_path: Path) -> None:
    rules = tmp_path / "own"
    rules.mkdir()
    shutil.copy(RULES / "ipt-b-8.yaml", rules / "ipt-b-8.yaml")
    (rules / "clinic.yaml").write_text(replace_line(clinic_text(), r"timezone: .*", "timezone: Europe/Oslo"))
    book = load_rules(rules)
    assert set(book.protocols) >= PROTOCOL_IDS
    assert book.sources["ipt-b-8"] == rules / "ipt-b-8.yaml"
    assert book.clinic.timezone == "Europe/Oslo"
    assert book.clinic_file == rules / "clinic.yaml"


def test_load_rules_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="not a directory of rule files"):
        load_rules(tmp_path / "missing")
