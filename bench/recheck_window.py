"""The window the dispatcher's re-check leaves open: a cancellation that commits after the
re-check before a webhook try and before the request reaches the receiver can still go out.
Measured: from the moment the re-check returned (the item is still due) to the moment a
receiver on 127.0.0.1 has the request, for N alerts POSTed one by one (SQLite, temp file).
An upper bound of the window: the request is on its way before it arrives."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from _common import rerun
from ipt_workflow.bootstrap import store_for
from ipt_workflow.delivery.dispatch import Lease, dispatch_due
from ipt_workflow.delivery.sinks import WebhookSink
from ipt_workflow.testing import LocalServer, seed_due


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=2000)
    args = parser.parse_args()
    arrived: dict[str, float] = {}
    checked: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived.setdefault(self.headers["Idempotency-Key"], time.perf_counter())
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = LocalServer(Handler)
    still_due = Lease.still_due

    def timed(lease: Lease, ids: list[str]) -> object:
        live = still_due(lease, ids)
        now = time.perf_counter()
        for i in live:
            checked.setdefault(i, now)
        return live

    Lease.still_due = timed  # type: ignore[assignment,method-assign]
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "x.sqlite")
        seed_due(db, args.alerts, now - timedelta(hours=1), now)
        store = store_for(db)
        sink = WebhookSink(server.url, tries=1)
        result = dispatch_due(store, now, [sink])
        sink.close()
        store.close()
    server.close()
    gaps = sorted((arrived[i] - checked[i]) * 1e6 for i in arrived)
    p99 = gaps[int(len(gaps) * 0.99) - 1]
    print(f"{len(gaps)} alerts POSTed one by one ({result.delivered} delivered, {result.retried} to retry);"
          " re-check returned -> request at the receiver:")  # fmt: skip
    print(f"  p50 {statistics.median(gaps):.0f} µs, p99 {p99:.0f} µs, max {gaps[-1]:.0f} µs")
    print(rerun("recheck_window.py [--alerts N]"))


if __name__ == "__main__":
    sys.exit(main())
