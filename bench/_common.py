"""Helpers shared by the benchmarks: timing, and the line that says how to rerun."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ipt_command() -> list[str]:
    exe = Path(sys.executable).parent / "ipt"
    return [str(exe)] if exe.exists() else [shutil.which("ipt") or "ipt"]


def byte_compiled() -> None:
    """Byte-compile the project's own modules, as an installed wheel has them. An editable
    install run with ``PYTHONDONTWRITEBYTECODE`` set (as on the machines these figures come
    from) otherwise compiles every module from source in every process: 130-300 ms that no
    installed copy spends."""
    import compileall

    compileall.compile_dir(ROOT / "ipt_workflow", quiet=1)
    compileall.compile_file(ROOT / "cli.py", quiet=1)


def wall_times(cmd: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of ``cmd`` (after one warm-up run, with the project's
    modules byte-compiled)."""
    byte_compiled()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        out.append(time.perf_counter() - t0)
    return out


def summary(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms over {len(ms)} runs"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rerun(script: str) -> str:
    return f"rerun: .venv/bin/python bench/{script}"
