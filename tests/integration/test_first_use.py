"""Several processes opening one brand-new database at the same moment (a daemon and a CLI
command started together): every one of them ends up with the schema, none fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

IPT = [str(Path(sys.executable).parent / "ipt")]


def test_processes_creating_one_new_database_at_once_all_succeed(db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [*IPT, "--db", db_url, "course", "list", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    for out, err, code in results:
        assert code == 0, err
        assert json.loads(out) == []
