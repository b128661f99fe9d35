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

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
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


_URL = re.compile(
    r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^/@\s"'<>]*@)?(?P<rest>[^\s"'<>?#]*)(?:[?#][^\s"'<>]*)?"""
)
# The loggers a webhook request makes log: httpx's INFO "HTTP Request: POST <url> ..." and httpcore's DEBUG trace.
HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks")


class RedactUrls(logging.Filter):
    """Rewrites every URL in a log record's message without its credentials, query or fragment."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = _URL.sub(r"\g<scheme>\g<rest>", message), ()
        return True


_REDACT = RedactUrls()


def redact_http_logs() -> None:
    """Install the URL-redacting filter on the HTTP client's loggers (idempotent)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


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


def signing_keys(secret: str) -> list[bytes]:
    """The Standard Webhooks keys of ``IPT_WEBHOOK_SECRET``: one per space-separated secret (two
    while rotating); ``whsec_<base64>`` is decoded, any other text is used as its UTF-8 bytes
    (a receiver's library then takes ``"whsec_" + base64(secret)``). Raises InvalidInput."""
    keys = []
    for part in secret.split():
        if part.startswith("whsec_"):
            try:
                keys.append(base64.b64decode(part.removeprefix("whsec_") + "==", validate=False))
            except ValueError:
                raise InvalidInput("IPT_WEBHOOK_SECRET: a whsec_ secret that is not base64") from None
        else:
            keys.append(part.encode())
    if not keys or not all(keys):
        raise InvalidInput("IPT_WEBHOOK_SECRET: empty")
    return keys


def standard_headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers: ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` per key, space-separated)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys
    )
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}


def legacy_key(secret: str) -> bytes:
    """The key of ``X-IPT-Signature``: the first secret's text, as before Standard Webhooks."""
    return secret.split()[0].encode()


class WebhookSink:
    """POSTs each event as JSON to ``url``. With ``IPT_WEBHOOK_SECRET`` set each request carries
    the Standard Webhooks headers (``webhook-id`` is the event id, the same on every try;
    ``webhook-timestamp`` the sending time; ``webhook-signature`` one ``v1,`` signature per
    secret) and ``X-IPT-Signature: sha256=<hex HMAC-SHA256 of the body>`` (first secret). Each event is tried ``tries``
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
        redact_http_logs()
        self.url = url
        self.secret = legacy_key(secret) if secret and secret.strip() else None
        self.keys = signing_keys(secret) if self.secret is not None and secret else []
        self.wall: Callable[[], float] = time.time  # webhook-timestamp (the real clock: receivers check it)
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
                if self.keys:
                    headers.update(standard_headers(self.keys, event["id"], int(self.wall()), body))
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
