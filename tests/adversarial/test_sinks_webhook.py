"""Bad webhook receivers against the real daemon: one that trickles a byte every 2 s is given
up on at the deadline (and SIGTERM does not wait longer), one that answers with a body of
hundreds of MB costs no memory, one that answers slowly does not hold up SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ipt_workflow.delivery.sinks import WEBHOOK_DEADLINE, WebhookSink
from ipt_workflow.testing import LocalServer
from tests.adversarial.test_sinks import NOW, ONCE, due_db, rules_without_digests, statuses
from tests.e2e.conftest import clean_env, ipt_command
from tests.sinkfiles import wait_for

HUGE = 300 * 2**20


class BadReceiver:
    """``trickle``: after the request, one byte of a never-ending status line every 2 s;
    ``huge``: 200 with a body of HUGE bytes; ``slow``: 200 after 3 s."""

    def __init__(self, how: str) -> None:
        self.requests = 0
        self.done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the sink hung up, as it should
                    getattr(self, how)()

            def trickle(self) -> None:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not receiver.done.wait(2):
                    self.wfile.write(b"a")
                    self.wfile.flush()

            def huge(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
                chunk = b"x" * 2**20
                for _ in range(HUGE // len(chunk)):
                    if receiver.done.is_set():
                        return
                    self.wfile.write(chunk)

            def slow(self) -> None:
                receiver.done.wait(3)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = LocalServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.done.set()
        self.http.close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[BadReceiver]:
    r = BadReceiver(request.param)
    yield r
    r.close()


def start(tmp_path: Path, db: Path, url: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    rules = rules_without_digests(tmp_path)
    log = tmp_path / "daemon.log"
    with log.open("wb") as f:  # a file, not a pipe: a full pipe would block the daemon
        proc = subprocess.Popen(
            [*ipt_command(), "--db", str(db), "--rules", str(rules), *args, "--sink", f"webhook:{url}"],
            cwd=tmp_path, env=clean_env(tmp_path), stdout=f, stderr=f,
        )  # fmt: skip
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("receiver", ["trickle"], indirect=True)
def test_the_sink_gives_up_on_a_trickling_receiver_at_the_deadline(receiver: BadReceiver) -> None:
    sink = WebhookSink(receiver.url, deadline=1.0)
    refused: dict[str, str] = {}
    worker = threading.Thread(target=lambda: refused.update(sink.deliver([{"id": f"rem_{i}"} for i in range(3)])))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "still waiting on a receiver that trickles"
    sink.close()
    assert set(refused) == {"rem_0", "rem_1", "rem_2"}
    assert receiver.requests == 1  # the rest of the batch is not tried against a receiver that timed out


@pytest.mark.parametrize("receiver", ["trickle"], indirect=True)
def test_a_once_run_gives_up_on_a_trickling_receiver(receiver: BadReceiver, tmp_path: Path) -> None:
    db, ids = due_db(tmp_path)
    proc, log = start(tmp_path, db, receiver.url, *ONCE)
    try:
        proc.wait(timeout=WEBHOOK_DEADLINE + 8)
    finally:
        stop(proc)
    err = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert f"delivered 0, skipped 0, {len(ids)} to retry" in err
    assert statuses(db, ids) == {"pending": len(ids)}
    assert receiver.requests == 1


@pytest.mark.parametrize("receiver", ["trickle"], indirect=True)
def test_sigterm_does_not_wait_on_a_trickling_receiver_beyond_the_deadline(
    receiver: BadReceiver, tmp_path: Path
) -> None:
    db, ids = due_db(tmp_path)
    proc, log = start(tmp_path, db, receiver.url, "daemon", "--now", NOW.isoformat(), "--sweep", "0.2")
    try:
        assert wait_for(lambda: receiver.requests == 1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WEBHOOK_DEADLINE + 5)
    finally:
        stop(proc)
    err = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in err and "stopped" in err, err
    assert statuses(db, ids) == {"pending": len(ids)}


@pytest.mark.parametrize("receiver", ["slow"], indirect=True)
def test_sigterm_waits_only_for_the_request_in_flight(receiver: BadReceiver, tmp_path: Path) -> None:
    db, ids = due_db(tmp_path, 5)
    proc, log = start(tmp_path, db, receiver.url, "daemon", "--now", NOW.isoformat(), "--sweep", "0.2")
    try:
        assert wait_for(lambda: receiver.requests == 1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=3 + 5)  # one slow answer, not five
    finally:
        stop(proc)
    err = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert receiver.requests == 1
    assert statuses(db, ids) == {"delivered": 1, "pending": len(ids) - 1}


@pytest.mark.parametrize("receiver", ["huge"], indirect=True)
def test_a_huge_response_body_is_not_read(receiver: BadReceiver, tmp_path: Path) -> None:
    db, ids = due_db(tmp_path, 2)
    proc, log = start(tmp_path, db, receiver.url, *ONCE)
    deadline = time.monotonic() + 60
    # The daemon's own peak (VmHWM of its process after exec), polled while it runs: the
    # child's ru_maxrss would also count this pytest process's peak, which the kernel carries
    # into a child at exec (so a long test session made it look like the daemon's).
    peak_kb = 0
    while (reaped := os.wait4(proc.pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
        time.sleep(0.02)
    if reaped[0] == 0:
        stop(proc)
        pytest.fail("the run did not end")
    proc.returncode = os.waitstatus_to_exitcode(reaped[1])
    peak_mb = peak_kb / 1024
    assert peak_kb > 0, "the daemon's memory was never read"
    err = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert f"delivered {len(ids)}" in err
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"


def _vm_hwm_kb(pid: int) -> int:
    """The peak resident set of process ``pid`` so far (``VmHWM``, kB); 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((x for x in text.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])
