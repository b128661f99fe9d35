"""The shape STYLE.md asks for, kept true by tests: the core loads no shell libraries,
the public API is what ``__all__`` says, and the wheel carries the rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ipt_workflow

ROOT = Path(__file__).resolve().parents[2]
CORE = [
    "core.errors",
    "core.model",
    "core.wallclock",
    "core.protocol",
    "core.lifecycle",
    "core.planner",
    "simulation",
    "present.views",
]


def test_core_imports_no_database_scheduler_or_cli_library() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import ipt_workflow.{m}\n" for m in CORE)
        + "print(json.dumps(sorted(m for m in ('sqlalchemy', 'apscheduler', 'click', 'rich', 'httpx')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == []


def test_package_import_is_the_public_api_and_loads_no_shell_library() -> None:
    code = (
        "import json, sys, ipt_workflow\n"
        "print(json.dumps(sorted(m for m in ('sqlalchemy', 'apscheduler', 'click', 'rich') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == []


EXPORTED = {
    "EVENTS", "FACTS", "ClinicPolicy", "ConflictError", "StoreError", "Workflow",
    "AgendaEntry", "Attachment", "CourseSummary", "GroupSummary", "GroupView", "SlotOption",
    "Course", "CourseState", "Effects", "HistoryEntry", "InvalidInput",
    "IptError", "Measurement", "Plan", "Protocol", "Refused", "Reminder", "ReminderStatus", "RuleFileError",
    "Rulebook", "ScheduleClash", "Session", "SessionStatus", "Simulation", "SimulationEvent", "UnknownName",
    "__version__",
    "allowed_events", "apply", "course_json", "history_json", "load_file", "load_rules", "new_course",
    "parse_events", "plan", "reminder_json", "session_json", "simulate", "why_not",
}  # fmt: skip


def test_exported_members() -> None:
    assert set(ipt_workflow.__all__) == EXPORTED
    for name in ipt_workflow.__all__:
        assert hasattr(ipt_workflow, name), name
    public = {n for n in dir(ipt_workflow) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(ipt_workflow, n)).__name__ == "module"}
    assert public - modules - set(ipt_workflow.__all__) == set()


@pytest.mark.slow
def test_wheel_carries_rules_and_works_outside_the_repo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(wheels.glob("ipt_workflow-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for rule in ("ipt-16", "ipt-b-8", "ipt-a-12", "ipt-g-8", "ipt-m", "clinic"):
        assert f"ipt_workflow/rules/{rule}.yaml" in names
    assert "cli.py" in names
    assert "ipt_workflow/py.typed" in names  # PEP 561: type checkers use our annotations
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("IPT_RULES", None)
    out = subprocess.run(
        [sys.executable, "-c", "import cli, ipt_workflow; print(ipt_workflow.__file__); cli.main()",
         "protocols", "list", "--json"],
        capture_output=True, text=True, cwd=elsewhere, env=env, check=True,
    )  # fmt: skip
    first, rest = out.stdout.split("\n", 1)
    assert first.startswith(str(target))
    assert sorted(p["id"] for p in json.loads(rest)) == ["ipt-16", "ipt-a-12", "ipt-b-8", "ipt-g-8", "ipt-m"]
    # a host's type checker reads the installed package's annotations (py.typed, PEP 561)
    from tests.unit.test_host_app import APP, mypy_strict

    app = elsewhere / "app.py"
    app.write_text(APP.read_text())
    checked = mypy_strict(app, elsewhere, tmp_path, env)
    assert checked.returncode == 0, checked.stdout


# Which packages each part of ipt_workflow may import (STYLE.md, "Where new code goes"): imports
# point inward, from the top (services, workflow, cli.py) down to the core.
ALLOWED = {
    "core": {"core"},
    "rulebook": {"core", "rulebook"},
    "storage": {"core", "storage"},
    "interop": {"core", "interop"},
    "present": {"core", "present"},
    "delivery": {"core", "storage", "delivery"},
}


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of the ipt_workflow modules ``path`` imports (function-level imports too)."""
    import ast

    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else []
            found.update([target, *names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "cli" or m.startswith("ipt_workflow")}


def test_imports_point_inward() -> None:
    wrong = []
    for path in sorted((ROOT / "ipt_workflow").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        parts = module.split(".")
        for target in imported_modules(path, module):
            if target == "cli":
                wrong.append(f"{module} imports cli.py")
                continue
            area = parts[1] if len(parts) > 2 else None
            if area not in ALLOWED:
                continue
            tparts = target.split(".")
            if len(tparts) < 2:
                wrong.append(f"{module} imports the ipt_workflow package")
                continue
            to = tparts[1]
            if to not in ALLOWED[area]:
                wrong.append(f"{module} ({area}) imports {target}")
    assert wrong == []


def test_core_is_one_package_without_circles_through_the_table() -> None:
    """``protocol`` and ``lifecycle`` both read the event table from ``core.events``;
    ``protocol`` does not import ``lifecycle``."""
    protocol = ROOT / "ipt_workflow" / "core" / "protocol.py"
    assert "ipt_workflow.core.lifecycle" not in imported_modules(protocol, "ipt_workflow.core.protocol")
