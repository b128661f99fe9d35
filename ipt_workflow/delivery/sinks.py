"""Where emitted reminders go: standard output, a file (one JSON object a line), a webhook,
or a library user's function.

A file sink is safe against a crash at any point: it appends and fsyncs each batch before the
store marks it delivered, and it reads the ids already in the file (also those another
writer appends), so a batch claimed again after a crash is not written twice (``filesink``).
``open_sinks`` checks every ``--sink`` before opening any: nothing is claimed, created or
changed when one of them is refused.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import InvalidInput
from .filesink import FileSink
from .stilldue import StillDue
from .stilldue import everything as _everything
from .webhook import WEBHOOK_DEADLINE, WebhookSink, check_url, redact

__all__ = [
    "WEBHOOK_DEADLINE", "CallableSink", "FileSink", "Sink", "StdoutSink", "WebhookSink", "open_sinks", "sink_for",
]  # fmt: skip


class Sink(Protocol):
    """Receives emitted events. ``deliver`` returns when they are safely written, with the
    ids it could not take and why (they are tried again later); before each attempt it keeps
    only the ids ``still_due`` allows."""

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = _everything) -> dict[str, str]: ...

    def close(self) -> None: ...


class StdoutSink:
    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = _everything) -> dict[str, str]:
        live = set(still_due([e["id"] for e in events]))
        for event in (e for e in events if e["id"] in live):
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        return {}

    def close(self) -> None:
        sys.stdout.flush()


class CallableSink:
    """A library user's function, called with each event (a dict); an exception refuses that
    event, which is tried again later."""

    def __init__(self, deliver: Callable[[dict[str, Any]], object]) -> None:
        self.function = deliver

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = _everything) -> dict[str, str]:
        refused: dict[str, str] = {}
        for event in events:
            if not still_due([event["id"]]):
                continue
            try:
                self.function(event)
            except Exception as exc:  # the host's code: any failure means "not taken"
                refused[event["id"]] = type(exc).__name__
        return refused

    def close(self) -> None:
        pass


def parse_sink(spec: str) -> tuple[str, str]:
    """``(kind, target)`` of one ``--sink`` spec, checked but not opened; raises InvalidInput."""
    if spec == "stdout":
        return "stdout", ""
    if spec.startswith("file:") and len(spec) > len("file:"):
        return "file", spec.removeprefix("file:")
    if spec.startswith("webhook:"):
        check_url(spec.removeprefix("webhook:"))
        return "webhook", spec.removeprefix("webhook:")
    raise InvalidInput(f"--sink: '{spec}' is not a sink (stdout, file:PATH or webhook:URL)")


def _identity(kind: str, target: str) -> tuple[object, ...]:
    """What makes two sinks one: a file's device and inode (its resolved path while it does
    not exist), a webhook's URL."""
    if kind != "file":
        return kind, target
    path = Path(target).expanduser()
    try:
        st = os.stat(path)
    except OSError:
        return kind, os.path.realpath(path)
    return kind, st.st_dev, st.st_ino


def open_sinks(specs: Sequence[str]) -> list[Sink]:
    """The sinks of ``specs``, in order: every spec is checked before any is opened, and a bad
    spec, one sink named twice (a file by two names or links too) or a file that is not a sink
    file raises InvalidInput naming it, leaving nothing open or created (and no file changed,
    but for a crash's torn last line dropped from a sink file opened before)."""
    parsed = [(spec, *parse_sink(spec)) for spec in specs]
    named: dict[tuple[object, ...], str] = {}
    for spec, kind, target in parsed:
        key = _identity(kind, target)
        if key in named:
            what = "file" if kind == "file" else "sink"
            shown, first = (redact(s) if s.startswith("webhook:") else s for s in (spec, named[key]))
            raise InvalidInput(f"--sink {shown}: the same {what} as --sink {first}: it would get every event twice")
        named[key] = spec
    opened: list[Sink] = []
    try:
        for _, kind, target in parsed:
            if kind == "stdout":
                opened.append(StdoutSink())
            elif kind == "file":
                opened.append(FileSink(Path(target).expanduser()))
            else:
                opened.append(WebhookSink(target, os.environ.get("IPT_WEBHOOK_SECRET")))
    except BaseException:
        for sink in reversed(opened):
            if isinstance(sink, FileSink):
                sink.discard()
            else:
                sink.close()
        raise
    return opened


def sink_for(spec: str) -> Sink:
    """``stdout``, ``file:PATH`` or ``webhook:URL``; raises InvalidInput naming the spec otherwise."""
    return open_sinks([spec])[0]
