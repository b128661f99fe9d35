"""The webhook sink against a real receiver on 127.0.0.1: signed bodies, retries, recovery,
and `failed` after the attempt limit, listed by `ipt reminders --status failed`."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ipt_workflow import Workflow
from ipt_workflow.delivery.dispatch import MAX_ATTEMPTS, RETRY_BASE, dispatch_due
from ipt_workflow.delivery.sinks import WebhookSink
from ipt_workflow.testing import LocalServer, seed_due

SECRET = "s3cret"
T0 = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)


class Receiver:
    """Answers 500 to the first ``failures`` requests (forever if None), then 200; the
    ``slow`` requests after those take ``SLOW`` seconds to answer (200), longer than the
    sink's timeout."""

    SLOW = 1.0

    def __init__(self, failures: int | None, slow: int = 0) -> None:
        self.failures = failures
        self.slow = slow
        self.requests: list[tuple[bytes, str]] = []
        self.keys: list[str] = []
        self.accepted: list[dict[str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((body, self.headers.get("X-IPT-Signature", "")))
                receiver.keys.append(self.headers.get("Idempotency-Key", ""))
                seen = len(receiver.requests)
                failing = receiver.failures is None or seen <= receiver.failures
                if not failing and seen <= (receiver.failures or 0) + receiver.slow:
                    time.sleep(receiver.SLOW)  # the sink has given up by now: a timeout
                self.send_response(500 if failing else 200)
                self.end_headers()
                if not failing:
                    receiver.accepted.append(json.loads(body))

            def log_message(self, *args: object) -> None:
                pass

        self.http = LocalServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    failures, slow = request.param if isinstance(request.param, tuple) else (request.param, 0)
    r = Receiver(failures, slow)
    yield r
    r.close()


def alert_course(wf: Workflow) -> None:
    wf.create_course(client="CL-1", start="2026-03-16", time="10:00", tz="Europe/London", course_id="c-1")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    wf.clock = lambda: at  # recorded as it happens: an event is never dated ahead of now
    wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 9, "item9": 1}, at=at)


@pytest.mark.parametrize("receiver", [4], indirect=True)
def test_signed_deliveries_survive_a_failing_receiver(receiver: Receiver, tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)  # only the safety alert is due
    with Workflow(str(tmp_path / "x.sqlite"), clock=lambda: T0) as wf:
        alert_course(wf)
        sink = WebhookSink(receiver.url, SECRET, tries=3, timeout=2)
        first = dispatch_due(wf.store, now, [sink])
        assert (first.delivered, first.retried) == (0, 1)  # 3 tries, all refused: tried again later
        assert [r.status for r in wf.reminders(status="pending") if r.kind == "safety_alert"] == ["pending"]
        assert dispatch_due(wf.store, now + RETRY_BASE / 2, [sink]).delivered == 0  # still backing off
        second = dispatch_due(wf.store, now + RETRY_BASE * 2, [sink])
        sink.close()
        assert second.delivered == 1
        assert [e["kind"] for e in receiver.accepted] == ["safety_alert"]
        assert [r.kind for r in wf.reminders(status="delivered")] == ["safety_alert"]
    for body, signature in receiver.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert signature == expected


@pytest.mark.parametrize("receiver", [(2, 2)], indirect=True)
def test_a_receiver_that_fails_then_times_out_then_recovers_gets_every_reminder(
    receiver: Receiver, tmp_path: Path
) -> None:
    """Five due alerts, one try each per run: two get 500, two time out, one goes through;
    the next run after the backoff delivers the four. None is lost; an id the receiver saw
    more than once (a timed-out request it still answered) carries the same Idempotency-Key."""
    db = tmp_path / "x.sqlite"
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ids = seed_due(str(db), 5, now - timedelta(minutes=5), now)
    with Workflow(str(db), clock=lambda: T0) as wf:
        sink = WebhookSink(receiver.url, SECRET, tries=1, timeout=Receiver.SLOW / 4)
        first = dispatch_due(wf.store, now, [sink])
        assert (first.delivered, first.retried) == (1, 4)
        second = dispatch_due(wf.store, now + RETRY_BASE * 2, [sink])
        sink.close()
        assert (second.delivered, second.retried) == (4, 0)
        assert sorted(r.id for r in wf.reminders(status="delivered")) == sorted(ids)
    time.sleep(Receiver.SLOW)  # the slow answers finish
    assert set(receiver.keys) == set(ids)
    assert {str(e["id"]) for e in receiver.accepted} == set(ids)
    for (body, signature), key in zip(receiver.requests, receiver.keys, strict=True):
        assert json.loads(body)["id"] == key
        assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("receiver", [None], indirect=True)
def test_a_receiver_that_never_recovers_ends_in_failed(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with Workflow(str(db), clock=lambda: T0) as wf:
        alert_course(wf)
        sink = WebhookSink(receiver.url, None, tries=1, timeout=2)
        at = now
        for _ in range(MAX_ATTEMPTS):
            dispatch_due(wf.store, at, [sink])
            at += RETRY_BASE * 2**MAX_ATTEMPTS
        sink.close()
        assert [r.kind for r in wf.reminders(status="failed")] == ["safety_alert"]
    assert len(receiver.requests) == MAX_ATTEMPTS
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ipt"), "--db", str(db), "reminders", "--status", "failed", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [r["kind"] for r in json.loads(listed.stdout)] == ["safety_alert"]


@pytest.mark.parametrize("receiver", [0], indirect=True)
def test_the_cli_signs_with_the_secret_from_the_environment(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    with Workflow(str(db), clock=lambda: T0) as wf:
        alert_course(wf)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ipt"), "--db", str(db), "daemon", "--once", "--now", "2026-03-01T12:30",
         "--sink", f"webhook:{receiver.url}"],
        capture_output=True, text=True, check=False, env={"IPT_WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, signature = receiver.requests[0]
    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body)["kind"] == "safety_alert"
