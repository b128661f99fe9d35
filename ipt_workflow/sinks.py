"""Where emitted reminders go: standard output or a file, one JSON object a line.

A file sink is safe against a crash at any point: it appends and fsyncs each batch before the
store marks it delivered, and on opening it reads the ids already in the file, so a batch
claimed again after a crash is not written twice.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import InvalidInput

#: The dispatcher's re-check: which of these ids may still go out (not cancelled meanwhile,
#: still held by this run). A sink asks it right before every attempt and drops the others.
StillDue = Callable[[Sequence[str]], Collection[str]]


def _everything(ids: Sequence[str]) -> Collection[str]:
    return ids


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

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = _everything) -> dict[str, str]:
        fresh: dict[str, dict[str, Any]] = {}
        for e in events:
            if e["id"] not in self.seen:
                fresh.setdefault(e["id"], e)
        live = set(still_due(list(fresh))) if fresh else set()
        fresh = {i: e for i, e in fresh.items() if i in live}
        if not fresh:
            return {}
        self.file.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in fresh.values()))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.seen.update(fresh)  # only once they are on disk
        return {}

    def close(self) -> None:
        self.file.close()


class WebhookSink:
    """POSTs each event as JSON to ``url``. With ``IPT_WEBHOOK_SECRET`` set each request carries
    ``X-IPT-Signature: sha256=<hex HMAC-SHA256 of the body>``. Each event is tried ``tries``
    times with exponential backoff and jitter, within a timeout; what still fails is handed
    back to be tried again later (and recorded ``failed`` after the dispatcher's limit)."""

    def __init__(self, url: str, secret: str | None = None, tries: int = 3, timeout: float = 5.0) -> None:
        import httpx

        self.url = url
        self.secret = secret.encode() if secret else None
        self.tries = tries
        self.client = httpx.Client(timeout=timeout)

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = _everything) -> dict[str, str]:
        import hashlib
        import hmac
        import random
        import time

        import httpx

        refused: dict[str, str] = {}
        for event in events:
            body = json.dumps(event, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": event["id"]}
            if self.secret is not None:
                headers["X-IPT-Signature"] = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            error = ""
            for attempt in range(self.tries):
                if not still_due([event["id"]]):
                    error = ""  # cancelled or taken over meanwhile: not sent
                    break
                try:
                    response = self.client.post(self.url, content=body, headers=headers)
                    if response.status_code < 300:
                        error = ""
                        break
                    error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__  # never the body: it is event data
                if attempt + 1 < self.tries:
                    time.sleep(0.2 * 2**attempt * (1 + random.random()))
            if error:
                refused[event["id"]] = error
        return refused

    def close(self) -> None:
        self.client.close()


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


def sink_for(spec: str) -> Sink:
    """``stdout``, ``file:PATH`` or ``webhook:URL``; raises InvalidInput naming the spec otherwise."""
    if spec == "stdout":
        return StdoutSink()
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileSink(Path(spec.removeprefix("file:")).expanduser())
    if spec.startswith(("webhook:http://", "webhook:https://")):
        return WebhookSink(spec.removeprefix("webhook:"), os.environ.get("IPT_WEBHOOK_SECRET"))
    raise InvalidInput(f"--sink: '{spec}' is not a sink (stdout, file:PATH or webhook:URL)")
