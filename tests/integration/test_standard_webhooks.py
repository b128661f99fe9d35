"""Standard Webhooks on every webhook request, verified by the ``standardwebhooks`` package as a
receiver would; and no credentials or query of a webhook URL in any log line of the daemon."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ipt_workflow.bootstrap import store_for
from ipt_workflow.delivery.dispatch import dispatch_due
from ipt_workflow.delivery.sinks import WebhookSink
from ipt_workflow.delivery.webhook import signing_keys, standard_headers
from ipt_workflow.testing import LocalServer, seed_due
from tests.adversarial.test_sinks import rules_without_digests
from tests.e2e.conftest import clean_env, ipt_command
from tests.sinkfiles import wait_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NEW = "whsec_" + base64.b64encode(b"the-new-secret-32-bytes-long....").decode()
OLD = "whsec_" + base64.b64encode(b"the-old-secret").decode()


class Receiver:
    """Keeps every request's body and headers (lower-case names) and answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = LocalServer(Handler)
        self.url = self.http.url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.http.close()


def deliver_two(tmp_path: Path, url: str, secret: str | None) -> list[str]:
    db = tmp_path / "x.sqlite"
    ids = seed_due(str(db), 2, NOW - timedelta(minutes=10), NOW - timedelta(minutes=1))
    store = store_for(str(db))
    sink = WebhookSink(url, secret, tries=1, timeout=5)
    try:
        assert dispatch_due(store, NOW, [sink]).delivered == 2
    finally:
        sink.close()
        store.close()
    return ids


def test_every_request_verifies_with_the_standard_webhooks_library(receiver: Receiver, tmp_path: Path) -> None:
    ids = deliver_two(tmp_path, receiver.url, NEW)
    assert [h["webhook-id"] for _, h in receiver.requests] == ids  # the event id: a receiver deduplicates by it
    for body, headers in receiver.requests:
        assert Webhook(NEW).verify(body, headers)["id"] == headers["webhook-id"]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        assert headers["x-ipt-signature"].startswith("sha256=")  # the old header stays
        assert headers["idempotency-key"] == headers["webhook-id"]


def test_rotation_signs_with_both_secrets(receiver: Receiver, tmp_path: Path) -> None:
    deliver_two(tmp_path, receiver.url, f"{NEW} {OLD}")
    for body, headers in receiver.requests:
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert all(part.startswith("v1,") for part in headers["webhook-signature"].split(" "))
        Webhook(NEW).verify(body, headers)  # receivers moved to the new secret
        Webhook(OLD).verify(body, headers)  # receivers still on the old one
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Webhook("whsec_" + base64.b64encode(b"someone-else").decode()).verify(body, headers)


def test_a_plain_secret_is_the_key_as_text(receiver: Receiver, tmp_path: Path) -> None:
    deliver_two(tmp_path, receiver.url, "s3cret")
    body, headers = receiver.requests[0]
    Webhook("whsec_" + base64.b64encode(b"s3cret").decode()).verify(body, headers)


def test_a_replayed_request_outside_the_tolerance_is_refused(receiver: Receiver, tmp_path: Path) -> None:
    deliver_two(tmp_path, receiver.url, NEW)
    body, headers = receiver.requests[0]
    sent = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    with freeze_time(sent + timedelta(minutes=4)):
        Webhook(NEW).verify(body, headers)  # within the library's 5 minutes
    with freeze_time(sent + timedelta(minutes=6)), pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(NEW).verify(body, headers)  # captured and replayed later: refused


def test_a_body_changed_in_transit_is_refused(receiver: Receiver, tmp_path: Path) -> None:
    deliver_two(tmp_path, receiver.url, NEW)
    body, headers = receiver.requests[0]
    forged = json.dumps({**json.loads(body), "kind": "session_reminder"}, separators=(",", ":")).encode()
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(forged, headers)


def test_without_a_secret_no_signature_headers(receiver: Receiver, tmp_path: Path) -> None:
    deliver_two(tmp_path, receiver.url, None)
    for _, headers in receiver.requests:
        assert not {"webhook-signature", "webhook-timestamp", "x-ipt-signature"} & set(headers)


def test_the_daemon_never_logs_a_webhook_urls_credentials_or_query(receiver: Receiver, tmp_path: Path) -> None:
    """The real daemon at debug level, posting to a URL with a user, password and token: the
    receiver gets the requests (with the credentials, as Basic auth) and no log line shows them."""
    db = tmp_path / "x.sqlite"
    seed_due(str(db), 3, NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://bob:hunter2@127.0.0.1:{port}/ipt?token=SECRET123"
    log = tmp_path / "daemon.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [*ipt_command(), "--db", str(db), "--rules", str(rules_without_digests(tmp_path)), "daemon",
             "--now", NOW.isoformat(), "--log-level", "debug", "--sweep", "0.2", "--sink", f"webhook:{url}"],
            cwd=tmp_path, env=clean_env(tmp_path, {"IPT_WEBHOOK_SECRET": NEW}), stdout=f, stderr=f,
        )  # fmt: skip
    try:
        assert wait_for(lambda: len(receiver.requests) >= 3), log.read_text()
        assert wait_for(lambda: "dispatched delivered=3" in log.read_text()), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "HTTP Request: POST http://127.0.0.1:" in text  # httpx's line is there, redacted
    assert "DEBUG httpcore" in text  # and the debug trace ran
    for secret in ("hunter2", "SECRET123", "bob", "token="):
        assert secret not in text
    auth = receiver.requests[0][1]["authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")) == b"bob:hunter2"
    assert all(Webhook(NEW).verify(body, headers) for body, headers in receiver.requests)


README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text(encoding="utf-8").split("### Verifying webhooks", 1)[1].split("\n### ", 1)[0]


def test_the_readme_python_example_verifies(receiver: Receiver, tmp_path: Path) -> None:
    code = SECTION.split("```py\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md (verifying webhooks)", "exec"), namespace)  # the README's own code
    deliver_two(tmp_path, receiver.url, NEW)
    body, headers = receiver.requests[0]
    assert namespace["verify"](body, headers, NEW)["id"] == headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        namespace["verify"](body + b" ", headers, NEW)


def run_shell_example(
    tmp_path: Path, body: bytes, headers: dict[str, str], secret: str
) -> subprocess.CompletedProcess[str]:
    script = SECTION.split("```sh\n", 1)[1].split("```", 1)[0]
    (tmp_path / "body.json").write_bytes(body)
    env = {"PATH": "/usr/bin:/bin", "ID": headers["webhook-id"], "TS": headers["webhook-timestamp"],
           "SIG": headers["webhook-signature"], "SECRET": secret}  # fmt: skip
    return subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_the_readme_openssl_example_verifies_and_refuses(receiver: Receiver, tmp_path: Path) -> None:
    deliver_two(tmp_path, receiver.url, f"{NEW} {OLD}")
    body, headers = receiver.requests[0]
    for secret in (NEW, OLD):
        ok = run_shell_example(tmp_path, body, headers, secret)
        assert (ok.returncode, ok.stdout, ok.stderr) == (0, "verified\n", "")
    forged = run_shell_example(tmp_path, body.replace(b"follow_up", b"safety_alert"), headers, NEW)
    assert (forged.returncode, forged.stderr) == (1, "bad signature\n")
    keys = signing_keys(NEW)
    old_ts = int(time.time()) - 600
    stale = standard_headers(keys, headers["webhook-id"], old_ts, body)
    late = run_shell_example(tmp_path, body, stale, NEW)
    assert (late.returncode, late.stderr) == (1, "stale timestamp\n")
