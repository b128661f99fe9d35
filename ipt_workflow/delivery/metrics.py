"""Prometheus metrics of the daemon (``ipt daemon --metrics HOST:PORT``), on a registry of its
own: events emitted, skipped, retried and failed by kind and sink, emission lag, how many are
due but still pending, and when the last sweep ran. ``prometheus_client`` is imported only
when metrics are asked for."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .stilldue import StillDue
from .stilldue import everything as _everything

if TYPE_CHECKING:
    from .sinks import Sink


class Metrics:
    """The daemon's metrics; ``serve`` starts the HTTP endpoint."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ("kind", "sink")
        self.emitted = Counter("ipt_events_emitted", "Events a sink took, by kind and sink.", labels,
                               registry=self.registry)  # fmt: skip
        self.refused = Counter("ipt_events_refused", "Delivery attempts a sink refused (tried again later).", labels,
                               registry=self.registry)  # fmt: skip
        self.outcomes = Counter("ipt_events", "Reminders and digests recorded, by outcome (delivered, skipped, "
                                "retried, failed) and kind.", ("outcome", "kind"), registry=self.registry)  # fmt: skip
        buckets = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 86400)
        self.lag = Histogram("ipt_emission_lag_seconds", "Seconds from an event's due instant to its emission.",
                             buckets=buckets, registry=self.registry)  # fmt: skip
        self.due_pending = Gauge("ipt_due_pending", "Reminders and digests due but not yet recorded.",
                                 registry=self.registry)  # fmt: skip
        self.last_sweep = Gauge("ipt_last_sweep_timestamp_seconds", "Unix time of the last sweep or dispatch.",
                                registry=self.registry)  # fmt: skip

    def serve(self, host: str, port: int) -> Any:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def wrap(self, sinks: Sequence[Sink], names: Sequence[str]) -> list[Sink]:
        """Each sink counting what it takes and refuses, under its (redacted) name."""
        return [CountedSink(sink, name, self) for sink, name in zip(sinks, names, strict=True)]

    def record(self, outcomes: dict[tuple[str, str], int]) -> None:
        for (outcome, kind), n in outcomes.items():
            if n:
                self.outcomes.labels(outcome, kind).inc(n)

    def swept(self, due_pending: int) -> None:
        self.due_pending.set(due_pending)
        self.last_sweep.set(time.time())


class CountedSink:
    """A sink that counts, per event kind, what the wrapped sink took and refused."""

    def __init__(self, sink: Sink, name: str, metrics: Metrics) -> None:
        self.sink = sink
        self.name = name
        self.metrics = metrics

    def deliver(self, events: Sequence[dict[str, Any]], still_due: StillDue = _everything) -> dict[str, str]:
        asked: set[str] = set()

        def counting(ids: Sequence[str]) -> Any:
            live = still_due(ids)
            asked.update(live)
            return live

        refused = self.sink.deliver(events, still_due=counting)
        for event in events:
            if event["id"] in refused:
                self.metrics.refused.labels(event["kind"], self.name).inc()
            elif event["id"] in asked:
                self.metrics.emitted.labels(event["kind"], self.name).inc()
                emitted = datetime.fromisoformat(event["emitted_at"])
                self.metrics.lag.observe(max((emitted - datetime.fromisoformat(event["due"])).total_seconds(), 0))
        return refused

    def close(self) -> None:
        self.sink.close()

    def __getattr__(self, name: str) -> Any:  # e.g. a WebhookSink's ``stopping``
        return getattr(self.sink, name)
