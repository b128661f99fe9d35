"""A webhook receiver on 127.0.0.1 for the daemon's tests (the pattern of
tests/integration/test_webhook.py, with a hook): every POST is recorded with its
``Idempotency-Key`` and answered by ``answer(key, n)``, which may act first (cancel a session,
stop a process) and returns the HTTP status."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from ipt_workflow.testing import LocalServer


class Receiver:
    """``keys``: the Idempotency-Key of each request, in arrival order; ``answer(key, n)`` (``n``
    counts requests from 1) gives the status, 200 by default, sent after ``delay`` seconds."""

    def __init__(self, answer: Callable[[str, int], int] | None = None, delay: float = 0.0) -> None:
        self.answer = answer or (lambda key, n: 200)
        self.delay = delay
        self.keys: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    receiver.keys.append(key)
                    n = len(receiver.keys)
                status = receiver.answer(key, n)
                time.sleep(receiver.delay)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = LocalServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()
