"""Where emitted reminders go: standard output or a file, one JSON object a line.

A file sink is safe against a crash at any point: it appends and fsyncs each batch before the
store marks it delivered, and on opening it reads the ids already in the file, so a batch
claimed again after a crash is not written twice.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import InvalidInput


class Sink(Protocol):
    """Receives emitted events; ``deliver`` returns only when they are safely written."""

    def deliver(self, events: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    def deliver(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.flush()


class FileSink:
    """Appends JSON lines to ``path``; an id already in the file is never written again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[str] = set()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._reconcile()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise InvalidInput(f"--sink file:{path}: {exc.strerror or exc}") from None
        self.file = os.fdopen(fd, "a", encoding="utf-8")

    def _reconcile(self) -> None:
        with self.path.open("rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        if data and not data.endswith(b"\n"):
            # A line cut short by a crash: drop it, so the reminder is written again whole.
            with self.path.open("r+b") as f:
                f.truncate(len(data) - len(lines[-1]))
            lines = lines[:-1]
        for line in lines:
            if line.strip():
                self.seen.add(json.loads(line)["id"])

    def deliver(self, events: Sequence[dict[str, Any]]) -> None:
        fresh: dict[str, dict[str, Any]] = {}
        for e in events:
            if e["id"] not in self.seen:
                fresh.setdefault(e["id"], e)
        if not fresh:
            return
        self.file.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in fresh.values()))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.seen.update(fresh)  # only once they are on disk

    def close(self) -> None:
        self.file.close()


def sink_for(spec: str) -> Sink:
    """``stdout`` or ``file:PATH``; raises InvalidInput naming the spec otherwise."""
    if spec == "stdout":
        return StdoutSink()
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileSink(Path(spec.removeprefix("file:")).expanduser())
    raise InvalidInput(f"--sink: '{spec}' is not a sink (stdout or file:PATH)")
