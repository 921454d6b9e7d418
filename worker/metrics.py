"""A worker process's own Prometheus metrics, served on INPAINT_WORKER_METRICS_PORT (0: off).

The registry lives in the worker's main process, and the server is started there
before Celery takes over. That is right for the pools we run: the GPU worker's
`--pool solo` runs tasks in the main process, and the ops worker's `--pool threads`
in threads of it. Under `--pool prefork` the tasks would run in forked children
whose counts this server never sees; we do not use prefork.

Job figures here are this process's since it started (counters reset on restart,
as Prometheus expects); service-wide job figures come from the API's /metrics.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage.broker import DROPPED

log = logging.getLogger(__name__)

INFERENCE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ResidentCollector(Collector):
    """Models loaded in this process, and CUDA memory when torch is loaded and a GPU is there."""

    def __init__(self, resident: Callable[[], list[dict[str, Any]]]) -> None:
        self.resident = resident

    def collect(self) -> Iterator[Metric]:
        models = GaugeMetricFamily(
            "inpaint_worker_resident_models",
            "Pipelines and components loaded in this worker (1 each).",
            labels=["kind", "source"],
        )
        sizes = GaugeMetricFamily(
            "inpaint_worker_resident_bytes",
            "Bytes each resident pipeline or component holds.",
            labels=["kind", "source"],
        )
        for item in self.resident():
            models.add_metric([item["kind"], item["source"]], 1)
            sizes.add_metric([item["kind"], item["source"]], item["bytes"])
        yield models
        yield sizes
        yield from gpu_memory()


def gpu_memory() -> Iterator[Metric]:
    """torch.cuda memory per device; nothing when torch is not imported (erase, ops worker) or there is no GPU."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    allocated = GaugeMetricFamily(
        "inpaint_worker_gpu_memory_allocated_bytes", "torch.cuda.memory_allocated.", labels=["device"]
    )
    reserved = GaugeMetricFamily(
        "inpaint_worker_gpu_memory_reserved_bytes", "torch.cuda.memory_reserved.", labels=["device"]
    )
    for index in range(torch.cuda.device_count()):
        allocated.add_metric([str(index)], torch.cuda.memory_allocated(index))
        reserved.add_metric([str(index)], torch.cuda.memory_reserved(index))
    yield allocated
    yield reserved


class BrokerCollector(Collector):
    """Broker messages this process dropped as undecodable (storage.broker.DROPPED)."""

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "inpaint_worker_broker_messages_dropped",
            "Broker messages this worker took off a queue and dropped: not JSON or not a task message.",
        )
        dropped.add_metric([], DROPPED.count)
        yield dropped


class WorkerMetrics:
    """The registry of one worker process and the instruments its tasks update."""

    def __init__(self, resident: Callable[[], list[dict[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "inpaint_worker_jobs",
            "Jobs this worker ran, by model and the status they ended in.",
            ["model", "status"],
            registry=self.registry,
        )
        self.inference = Histogram(
            "inpaint_worker_inference_seconds",
            "Inference time of jobs this worker completed.",
            ["model"],
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "inpaint_worker_webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, pending (will retry), failed, disabled.",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(ResidentCollector(resident))
        self.registry.register(BrokerCollector())

    def record_job(self, *, model: str, status: str, inference_seconds: float | None) -> None:
        self.jobs.labels(model, status).inc()
        if inference_seconds is not None:
            self.inference.labels(model).observe(inference_seconds)

    def record_webhook(self, outcome: str | None) -> None:
        if outcome is not None:  # None: not due, or another attempt holds it; nothing was sent
            self.webhooks.labels(outcome).inc()

    def serve(self, port: int) -> None:
        """Start the /metrics server on all interfaces; a port in use is logged, never fatal."""
        if not port:
            return
        try:
            start_http_server(port, registry=self.registry)
        except OSError as exc:
            log.error("worker metrics server not started on port %d: %s", port, exc)
            return
        log.info("worker metrics on port %d", port)
