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
