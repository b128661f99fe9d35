"""The webhook sink: each event POSTed as JSON, signed when a secret is set.

Each request has ``WEBHOOK_DEADLINE`` seconds in all (connect, send, status line, headers and
the first bytes of the body), on top of the 5 s per network read or write: a watchdog shuts
the request's socket down when the deadline passes, so a receiver that trickles a byte at a
time cannot hold the daemon (nor SIGTERM) for longer. At most ``BODY_CAP`` bytes of a
response body are read (a 400 MB answer costs nothing); only the status matters. A request
that runs out of time is not tried again in that batch, nor are the events after it: the
receiver is too slow, and they go out at a later run. (Name resolution is not covered by the
deadline: the system resolver has its own timeouts.)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import InvalidInput
from .stilldue import StillDue, everything

WEBHOOK_DEADLINE = 10.0  # seconds for one request, in all
BODY_CAP = 4096  # bytes of a response body read at most (one network read may bring up to 64 KiB)


class _OutOfTime(Exception):
    """The request's deadline passed between two of its steps."""


def redact(url: str) -> str:
    """``url`` without credentials, query or fragment: what messages may show of it."""
    rest = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, tail = rest.partition("://")
    if not sep:
        return scheme
    authority, slash, path = tail.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def check_url(url: str) -> None:
    """Raise InvalidInput (showing the URL without credentials or query) unless ``url`` is an
    http(s) URL with a valid host and port."""
    import httpx

    bad = InvalidInput(f"--sink webhook:{redact(url)}: not a valid http:// or https:// URL")
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise bad from None
    if parsed.scheme not in ("http", "https") or not host or not (port is None or 0 < port < 65536):
        raise bad
    if not re.fullmatch(r"[A-Za-z0-9._-]+", host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise bad from None


class WebhookSink:
    """POSTs each event as JSON to ``url``. With ``IPT_WEBHOOK_SECRET`` set each request carries
    ``X-IPT-Signature: sha256=<hex HMAC-SHA256 of the body>``. Each event is tried ``tries``
    times with exponential backoff and jitter, each request within ``deadline`` seconds; what
    still fails is handed back to be tried again later (and recorded ``failed`` after the
    dispatcher's limit). Once ``stopping()`` is true no new request starts: the rest of the
    batch is handed back."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        tries: int = 3,
        timeout: float = 5.0,
        deadline: float = WEBHOOK_DEADLINE,
    ) -> None:
        import httpx

        check_url(url)
        self.url = url
        self.secret = secret.encode() if secret else None
        self.tries = tries
        self.deadline = deadline
        self.stopping: Callable[[], bool] = lambda: False
        self.client = httpx.Client(timeout=min(timeout, deadline))
        self._guard = threading.Lock()  # between a request and its watchdog
        self._socket: socket.socket | None = None  # of the connection in use (one: requests are sequential)
        self._request = 0  # which request the watchdog may cut
        self._expired = False

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = everything) -> dict[str, str]:
        refused: dict[str, str] = {}
        skip = ""  # why the rest of the batch is not tried
        for event in events:
            if not skip and self.stopping():
                skip = "not tried: stopping"
            if skip:
                refused[event["id"]] = skip
                continue
            body = json.dumps(event, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": event["id"]}
            if self.secret is not None:
                headers["X-IPT-Signature"] = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            error = ""
            for attempt in range(self.tries):
                if not still_due([event["id"]]):
                    error = ""  # cancelled or taken over meanwhile: not sent
                    break
                error = self._post(body, headers)
                if not error or self._expired or self.stopping():
                    break
                if attempt + 1 < self.tries:
                    time.sleep(0.2 * 2**attempt * (1 + random.random()))
            if error:
                refused[event["id"]] = error
            if self._expired:
                skip = f"not tried: a request ran out of its {self.deadline:g} s"
        return refused

    def _post(self, body: bytes, headers: dict[str, str]) -> str:
        """One request within the deadline: "" when the receiver took it, else why not (never
        the body: it is event data)."""
        import httpx

        with self._guard:
            self._request += 1
            self._expired = False
        watchdog = threading.Timer(self.deadline, self._expire, args=(self._request,))
        watchdog.daemon = True
        watchdog.start()
        status: int | None = None
        error = ""
        try:
            with self.client.stream("POST", self.url, content=body, headers=headers,
                                    extensions={"trace": self._trace}) as response:  # fmt: skip
                status = response.status_code
                read = 0
                for chunk in response.iter_raw():  # a little of the body, then hang up
                    read += len(chunk)
                    if read >= BODY_CAP:
                        break
        except (httpx.HTTPError, _OutOfTime) as exc:
            error = f"no answer within {self.deadline:g} s" if self._expired else type(exc).__name__
        finally:
            watchdog.cancel()
            with self._guard:
                self._request += 1  # a watchdog that fires now cuts nothing
        if status is None:
            return error
        return "" if status < 300 else f"HTTP {status}"  # it stands, whatever the body did

    def _trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: remember the socket of a new connection; stop
        between two steps of a request whose deadline passed."""
        if name.endswith((".connect_tcp.complete", ".start_tls.complete")):
            stream = info.get("return_value")
            with self._guard:
                self._socket = stream.get_extra_info("socket") if stream is not None else None
        if self._expired:
            raise _OutOfTime()

    def _expire(self, request: int) -> None:
        """The watchdog: the deadline of ``request`` passed; if it is still in flight, shut its
        socket down, which ends a read or write blocked on it at once."""
        with self._guard:
            if request != self._request:
                return
            self._expired = True
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._socket, socket.SHUT_RDWR)  # the plain one, also under TLS

    def close(self) -> None:
        self.client.close()
