"""The example host application (``tests/host_app/app.py``) uses only the public API and
type-checks under ``mypy --strict``: every ``Workflow`` method returns a precise type (no
``dict[str, Any]`` to guess at), and the installed package carries ``py.typed`` (PEP 561) so a
host's type checker reads our annotations (checked against the built wheel in
``test_architecture.test_wheel_carries_rules_and_works_outside_the_repo``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "host_app" / "app.py"


def mypy_strict(
    app: Path, cwd: Path, scratch: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``app`` alone, run in ``cwd``: not this project's mypy settings, and
    errors only in the app (the library's own modules are checked by ``make lint``)."""
    config = scratch / "host-mypy.ini"
    config.write_text("[mypy]\n")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--config-file", str(config),
         "--cache-dir", str(scratch / "mypy-cache"), str(app)],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_host_app_type_checks_with_mypy_strict(tmp_path: Path) -> None:
    done = mypy_strict(APP, ROOT, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found in 1 source file")


def test_a_host_app_that_misreads_a_result_is_caught(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from ipt_workflow import Workflow\n"
        "def first_id(wf: Workflow) -> str:\n"
        "    return wf.courses()[0]['id']\n"  # a CourseSummary, not a dict
    )
    done = mypy_strict(wrong, ROOT, tmp_path)
    assert done.returncode == 1
    assert 'Value of type "CourseSummary" is not indexable' in done.stdout


def test_the_host_app_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from tests.host_app.app import run
    finally:
        sys.path.remove(str(ROOT))
    lines = run(str(tmp_path / "clinic.sqlite"))
    assert lines[0].endswith(" assessment v2")
    assert "status: 'sent' is not one of pending, delivered, skipped, cancelled, failed" in lines
    assert lines[-2:] == ["attached ipt:digest, ipt:sweep", "detached 2"]


def test_every_workflow_method_returns_pydantic_models() -> None:
    """Typed all the way: no ``dict[str, Any]`` (or dataclass) comes out of ``Workflow``."""
    import inspect
    import types
    import typing

    from pydantic import BaseModel

    from ipt_workflow import Workflow
    from ipt_workflow.absences import AbsenceChange
    from ipt_workflow.delivery.dispatch import Dispatched
    from ipt_workflow.delivery.host import HostJobs
    from ipt_workflow.delivery.sinks import Sink

    names = {"AbsenceChange": AbsenceChange, "Dispatched": Dispatched, "HostJobs": HostJobs, "Sink": Sink}

    documents = {"report": str, "export_fhir": dict[str, typing.Any]}  # an HTML page; a FHIR Bundle (JSON)

    def typed(kind: object) -> bool:
        if kind is type(None) or (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return True
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin is list:
            return typed(args[0])
        return origin in (typing.Union, types.UnionType) and all(typed(a) for a in args)

    untyped = []
    for name, method in inspect.getmembers(Workflow, inspect.isfunction):
        if name.startswith("_"):
            continue
        returned = typing.get_type_hints(method, localns=names)["return"]
        if name in documents:
            assert returned == documents[name], (name, returned)
            continue
        if not typed(returned):
            untyped.append(f"{name} -> {returned}")
    assert untyped == []
