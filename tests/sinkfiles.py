"""Helpers for tests that read what the daemon wrote: JSON lines in a file sink, and waiting
for a condition on a running process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects in a file sink, in order ([] when the file does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Callable[[], object], seconds: float = 15.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` every ``step`` seconds until it is true (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
