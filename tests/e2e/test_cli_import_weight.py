"""A command loads only what it uses (issue 15, item 5): ``ipt protocols list`` opens no
database and builds no course model, ``--json`` output renders no table, and the write path
(``course create``, ``course event``) loads no table, template, HTTP or scheduler library.
Each command runs in a fresh interpreter that reports the modules it ended with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, clean_env

#: Runs the console script's ``main`` and writes what got loaded to the file in argv[1]:
#: the top-level packages, and which of the model classes had built their validators.
PROBE = """
import json, sys
out, sys.argv = sys.argv[1], ["ipt", *sys.argv[2:]]
import cli
try:
    cli.main()
except SystemExit:
    pass
finally:
    built = {}
    model = sys.modules.get("ipt_workflow.core.model")
    for name in ("Course", "Session", "Reminder", "Group", "Plan"):
        built[name] = bool(model and getattr(model, name).__pydantic_complete__)
    with open(out, "w") as f:
        json.dump({"packages": sorted({m.split(".")[0] for m in sys.modules}), "built": built}, f)
"""

#: Libraries no command below uses: HTML reports, webhooks, the daemon's scheduler and metrics.
NEVER = {"jinja2", "markupsafe", "httpx", "apscheduler", "prometheus_client", "psycopg"}
COURSE = ["--client", "CL-1", "--start", "2027-01-04", "--time", "10:00", "--tz", "Europe/London"]
MEASURE = '{"instrument": "phq9", "score": 12, "item9": 0}'


def loaded(tmp_path: Path, *args: str) -> dict[str, Any]:
    """What ``ipt ARGS`` loaded (it must succeed)."""
    out = tmp_path / "loaded.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), "--db", str(tmp_path / "w.sqlite"), *args],
        cwd=tmp_path, env=clean_env(tmp_path, {"PYTHONPATH": str(REPO)}), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def packages(data: dict[str, Any]) -> set[str]:
    return set(data["packages"])


@pytest.mark.parametrize("as_json", [False, True])
def test_protocols_list_opens_no_database_and_builds_no_course_model(tmp_path: Path, as_json: bool) -> None:
    data = loaded(tmp_path, "protocols", "list", *(["--json"] if as_json else []))
    found = packages(data)
    assert found.isdisjoint(NEVER | {"sqlalchemy", "sqlite3", "transitions"}), found & (NEVER | {"sqlalchemy"})
    assert ("rich" in found) is not as_json  # a table needs rich; JSON does not
    assert data["built"] == {"Course": False, "Session": False, "Reminder": False, "Group": False, "Plan": False}
    assert not (tmp_path / "w.sqlite").exists()


def test_help_loads_no_engine(tmp_path: Path) -> None:
    found = packages(loaded(tmp_path, "--help"))
    assert found.isdisjoint(NEVER | {"sqlalchemy", "pydantic", "yaml", "holidays", "rich", "cel", "transitions"})


def test_write_path_loads_no_table_template_http_or_scheduler_library(tmp_path: Path) -> None:
    # SQLAlchemy is not asserted on here: the plain SQLite path is another change's. The first
    # command on a new database creates its schema (alembic, which loads mako and markupsafe).
    loaded(tmp_path, "course", "create", *COURSE, "--id", "C1", "--now", "2027-01-01T09:00")
    created = loaded(tmp_path, "course", "create", *COURSE, "--id", "C2", "--now", "2027-01-01T09:00")
    unused = NEVER | {"rich", "ctypes"}  # ctypes: the import's worker processes only
    assert packages(created).isdisjoint(unused), packages(created) & unused
    assert created["built"]["Group"] is False
    for extra in ([], ["--json"]):
        event = loaded(tmp_path, "course", "event", "C1", "record_measure", "--data", MEASURE,
                       "--now", "2027-01-02T09:00", *extra)  # fmt: skip
        assert packages(event).isdisjoint(unused), packages(event) & unused
        assert event["built"]["Group"] is False
