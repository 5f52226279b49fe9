"""Prometheus metrics in the text format, every name prefixed ``zapmux_``.

Counters and histograms are kept by the parts that count (one :class:`Metrics` per
gateway, injected); gauges are read from the live state at scrape time.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str) -> Iterable[str]:
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            yield f'{name}_bucket{{le="{bound}"}} {running}'
        yield f'{name}_bucket{{le="+Inf"}} {sum(self.counts)}'
        yield f"{name}_sum {self.total}"
        yield f"{name}_count {sum(self.counts)}"


class Metrics:
    """What zapmux counts while it runs."""

    COUNTERS: ClassVar[dict[str, str]] = {
        "messages_received_total": "Messages received from WhatsApp",
        "inbound_dead_total": "Inbound messages set aside because they could not be recorded",
        "messages_sent_total": "Messages handed to WhatsApp",
        "messages_failed_total": "Messages that could not be sent",
        "reconnect_attempts_total": "Reconnects scheduled after a transient disconnect",
        "worker_restarts_total": "Engine sessions (whatsmeow: worker processes) started again "
        "after one ended",
        "webhook_attempts_total": "Webhook POSTs, by outcome",
        "outbox_store_errors_total": "Times the deliverer could not reach the outbox",
    }
    HISTOGRAMS: ClassVar[dict[str, str]] = {
        "send_latency_seconds": "From accepting a send to WhatsApp taking it",
        "delivery_latency_seconds": "From an event entering the outbox to its delivery",
    }

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self.histograms = {name: Histogram() for name in self.HISTOGRAMS}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        assert name in self.COUNTERS, name
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def observe(self, name: str, value: float) -> None:
        self.histograms[name].observe(value)

    def render(self, gauges: dict[str, tuple[str, dict[Labels, float]]]) -> str:
        """The exposition text: counters, histograms, then the given gauges."""
        out: list[str] = []
        for name, help_text in self.COUNTERS.items():
            full = f"zapmux_{name}"
            out += [f"# HELP {full} {help_text}", f"# TYPE {full} counter"]
            series = self.counters.get(name) or {(): 0.0}
            out += [f"{full}{_labels(k)} {v:g}" for k, v in sorted(series.items())]
        for name, help_text in self.HISTOGRAMS.items():
            full = f"zapmux_{name}"
            out += [f"# HELP {full} {help_text}", f"# TYPE {full} histogram"]
            out += list(self.histograms[name].lines(full))
        for name, (help_text, series) in gauges.items():
            full = f"zapmux_{name}"
            out += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge"]
            out += [f"{full}{_labels(k)} {v:g}" for k, v in sorted(series.items())]
        return "\n".join(out) + "\n"
