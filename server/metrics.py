"""Prometheus collectors, one registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


_FRONTEND_BUCKETS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)


def multiprocess_enabled() -> bool:
    """prometheus_client's multiprocess mode: chosen when it was first imported, by the
    PROMETHEUS_MULTIPROC_DIR environment variable (`convoy serve --workers N` sets it for its
    processes). Each process's values then live in files there."""
    return values.ValueClass is not values.MutexValue


def _powers_of_two(limit: int) -> tuple[float, ...]:
    buckets, b = [], 1
    while b < limit:
        buckets.append(float(b))
        b *= 2
    buckets.append(float(limit))
    return tuple(buckets)


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """One model's labelled children of the Metrics collectors."""

    queue_depth: Any
    batch_size: Any
    inference_seconds: Any
    chunks_ok: Any
    chunks_error: Any
    cancelled: Any
    rejected: Counter  # by reason, not by model


class Metrics:
    """Every collector Convoy exports. `model` labels keep several served models apart."""

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # multiprocess_mode: how `--workers N` sums a gauge over its processes (ignored otherwise).
        self.queue_depth = Gauge(
            "convoy_queue_depth",
            "Chunks waiting for a batch.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "convoy_batch_size",
            "Chunks per forward pass.",
            ["model"],
            buckets=_powers_of_two(max_batch_size),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "convoy_inference_seconds",
            "Time of one forward pass (tokenisation excluded when it overlapped).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_latency = Histogram(
            "convoy_request_latency_seconds",
            "Time from request received to response ready.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.chunks = Counter(
            "convoy_chunks_total", "Chunks computed, by outcome.", ["model", "outcome"], registry=r
        )
        self.rejected = Counter(
            "convoy_rejected_total", "Requests refused at admission.", ["reason"], registry=r
        )
        self.cancelled = Counter(
            "convoy_cancelled_total",
            "Queued chunks dropped because nobody waited for them any more.",
            ["model"],
            registry=r,
        )
        self.requests = Counter(
            "convoy_requests_total", "Requests answered.", ["route", "status"], registry=r
        )
        # --- remote upstreams ---
        self.upstream_requests = Counter(
            "convoy_upstream_requests_total",
            "HTTP attempts sent to remote upstreams, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "convoy_upstream_retries_total", "Attempts repeated after a retryable failure.", registry=r
        )
        self.websockets = Gauge(
            "convoy_websocket_connections",
            "Open /ws connections (still cleaning up included).",
            registry=r,
            multiprocess_mode="livesum",
        )
        # --- the engine of --workers N ---
        self.batch_frontends = Histogram(
            "convoy_batch_frontends",
            "Front-end processes whose chunks share one forward pass (the engine of --workers N).",
            ["model"],
            buckets=_FRONTEND_BUCKETS,
            registry=r,
        )
        if multiprocess_enabled():
            # Every process of `--workers N` writes its values to PROMETHEUS_MULTIPROC_DIR; /metrics
            # (any front-end) reads them all: counters and histograms summed, gauges as set above.
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        # Labelled children by label values: `labels()` validates and locks on every call, which
        # is a measurable share of a request's cost when the model is fast.
        self._latency_by_route: dict[str, Any] = {}
        self._requests_by_route_status: dict[tuple[str, int], Any] = {}

    def for_model(self, model: str) -> ModelMetrics:
        """The collectors of one model, labelled once (a batcher updates them per batch)."""
        return ModelMetrics(
            queue_depth=self.queue_depth.labels(model),
            batch_size=self.batch_size.labels(model),
            inference_seconds=self.inference_seconds.labels(model),
            chunks_ok=self.chunks.labels(model, "ok"),
            chunks_error=self.chunks.labels(model, "error"),
            cancelled=self.cancelled.labels(model),
            rejected=self.rejected,
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """One answered request: its latency and its count, by route (and status)."""
        latency = self._latency_by_route.get(route)
        if latency is None:
            latency = self._latency_by_route[route] = self.request_latency.labels(route)
        latency.observe(seconds)
        counter = self._requests_by_route_status.get((route, status))
        if counter is None:
            counter = self._requests_by_route_status[(route, status)] = self.requests.labels(
                route, str(status)
            )
        counter.inc()
