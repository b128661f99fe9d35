"""``ipt daemon --metrics HOST:PORT``: Prometheus counters scraped while the daemon drains a
backlog through a slow webhook receiver, and once it is done."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipt_workflow.testing import LocalServer, seed_due
from tests.adversarial.test_sinks import rules_without_digests
from tests.e2e.conftest import clean_env, ipt_command
from tests.sinkfiles import wait_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
N = 30


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def slow_receiver() -> Iterator[LocalServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(0.05)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = LocalServer(Handler)
    yield server
    server.close()


def test_metrics_count_a_drain_by_kind_and_sink(slow_receiver: LocalServer, tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    seed_due(str(db), N, NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    hook = slow_receiver.url.replace("127.0.0.1", "user:pw@127.0.0.1") + "?token=t0k"
    log = tmp_path / "daemon.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [*ipt_command(), "--db", str(db), "--rules", str(rules_without_digests(tmp_path)), "daemon",
             "--now", NOW.isoformat(), "--batch", "5", "--sweep", "0.2", "--metrics", f"127.0.0.1:{port}",
             "--sink", f"webhook:{hook}"],
            cwd=tmp_path, env=clean_env(tmp_path), stdout=f, stderr=f,
        )  # fmt: skip
    sink = "webhook:" + slow_receiver.url  # the label shows no credentials or query
    emitted = ("ipt_events_emitted_total", (("kind", "follow_up"), ("sink", sink)))
    delivered = ("ipt_events_total", (("kind", "follow_up"), ("outcome", "delivered")))
    try:
        seen: list[float] = []

        def scraped() -> bool:
            try:
                seen.append(samples(url).get(emitted, 0.0))
            except httpx.HTTPError:
                return False
            return seen[-1] >= N

        assert wait_for(scraped, 30, 0.1), log.read_text()
        assert any(0 < v < N for v in seen), seen  # scraped during the drain, not only after it
        assert wait_for(lambda: samples(url).get(delivered) == N and samples(url).get(("ipt_due_pending", ())) == 0,
                        10), samples(url)  # fmt: skip
        final = samples(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    assert final[("ipt_emission_lag_seconds_count", ())] == N
    assert final[("ipt_last_sweep_timestamp_seconds", ())] > time.time() - 60
    assert not any(name == "ipt_events_refused_total" and v for (name, _), v in final.items())
    assert "t0k" not in str(final) and "pw@" not in str(final)


def test_a_bad_metrics_address_is_a_usage_error(tmp_path: Path) -> None:
    for bad in ("9100", "host:", "host:99999"):
        run = subprocess.run([*ipt_command(), "--db", str(tmp_path / "x.sqlite"), "daemon", "--metrics", bad],
                             capture_output=True, text=True, env=clean_env(tmp_path), timeout=30)  # fmt: skip
        assert run.returncode == 2 and "--metrics" in run.stderr
