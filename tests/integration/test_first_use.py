"""Several processes opening one brand-new database at the same moment (commands that write,
started together): every one of them ends up with the schema, none fails. Commands that only
read never create a database (tests/adversarial/test_cli_store.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

IPT = [str(Path(sys.executable).parent / "ipt")]
COURSE = ["--start", "2026-03-02", "--time", "10:00", "--tz", "Europe/London", "--now", "2026-03-01T09:00"]


def test_processes_creating_one_new_database_at_once_all_succeed(db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [*IPT, "--db", db_url, "course", "create", "--client", f"CL-{i}", "--id", f"c-{i}", *COURSE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    for i, (out, err, code) in enumerate(results):
        assert (code, out, err) == (0, f"c-{i}\n", "")
    listed = subprocess.run([*IPT, "--db", db_url, "course", "list", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert [c["id"] for c in json.loads(listed.stdout)] == ["c-0", "c-1", "c-2", "c-3"]
