"""End-to-end helpers: run the real ``ipt`` console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"


def ipt_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m cli``."""
    script = Path(sys.executable).parent / "ipt"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "cli"]


def clean_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without ipt settings, with a private data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPT_")}
    env.update(
        {
            "XDG_DATA_HOME": str(tmp / "data"),
            "HOME": str(tmp / "home"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
            # REPO for the ``python -m cli`` fallback; the caller's path after it (tests/anytime.py)
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }
    )
    env.update(extra or {})
    return env


RunIpt = Callable[..., subprocess.CompletedProcess[str]]


def run_ipt(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ipt_command(), *(str(a) for a in args)],
        cwd=cwd,
        env=clean_env(cwd, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def ipt(tmp_path: Path) -> RunIpt:
    """``ipt(*args, env={...})`` runs the CLI in ``tmp_path`` and returns the finished process."""

    def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_ipt(*args, cwd=tmp_path, env=env)

    return run


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Refused or invalid input (SPEC §6): exit 1, nothing on stdout, one ``error:`` line on
    stderr and no traceback. Returns that line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == "", result.stdout
    return lines[0]


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """A usage error: exit 2, no traceback; returns stderr."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr
