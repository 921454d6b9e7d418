"""The API's Prometheus collector: job, queue, webhook and sweeper figures, computed at scrape time.

Nothing is counted in process memory (the API runs many stateless processes):
each scrape reads the database with a few aggregate queries and asks the broker
for its queue lengths. Durations are gauge histograms over the jobs that finished
in the last `INPAINT_METRICS_WINDOW_SECONDS` (at most SAMPLE_LIMIT of them), with
the fixed buckets below; they describe that window, so query their buckets as
they are, without rate(). docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from celery import Celery
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from storage.broker import QUEUE_INPAINT, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS, queue_sizes
from storage.database.clock import database_now
from storage.database.engine import session_scope
from storage.database.fleet import list_workers
from storage.database.models import JobStatus
from storage.database.stats import (
    REAPER_EXPIRED,
    RETENTION_PURGED_JOBS,
    SWEEPER_ACTIONS,
    FinishedJob,
    JobCount,
    count_deliveries,
    count_jobs,
    count_waiting,
    purged_delivery_counts,
    purged_job_counts,
    read_counts,
    recent_finished,
)
from storage.database.webhooks import PENDING

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SAMPLE_LIMIT = 10_000
QUEUES = (QUEUE_INPAINT, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS)
WEBHOOK_OUTCOMES = ("delivered", "failed", "disabled")
WORKER_STATES = ("idle", "busy", "offline")
OFFLINE_AFTER = timedelta(seconds=15)
"""Three heartbeats at the default INPAINT_WORKER_HEARTBEAT_SECONDS (storage.database.fleet's rule);
the app passes three of the configured ones."""


class ServiceCollector(Collector):
    """Collects from the database and broker of one API process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        celery: Celery,
        *,
        window_seconds: int,
        offline_after: timedelta = OFFLINE_AFTER,
    ) -> None:
        self.sessions, self.celery, self.window = sessions, celery, timedelta(seconds=window_seconds)
        self.offline_after = offline_after

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration: that would query the database at start-up

    def collect(self) -> Iterator[Metric]:
        with session_scope(self.sessions) as session:
            jobs = count_jobs(session)
            waiting = count_waiting(session)
            deliveries = count_deliveries(session)
            counters = read_counts(session)
            now = database_now(session)
            finished = recent_finished(session, since=now - self.window, limit=SAMPLE_LIMIT)
            workers = list_workers(session, now=now, stale_after=self.offline_after)
        yield from job_metrics(jobs, purged=purged_job_counts(counters))
        yield from queue_metrics(waiting, queue_sizes(self.celery, QUEUES))
        yield from webhook_metrics(deliveries, purged=purged_delivery_counts(counters))
        yield from action_metrics(counters)
        yield from duration_metrics(finished, window=self.window)
        yield worker_metric(workers)


def job_metrics(jobs: Iterable[JobCount], purged: Iterable[JobCount] = ()) -> Iterator[Metric]:
    """Counters over the job rows plus the tallies of purged ones (record retention); the
    gauge of jobs now in each status over the rows alone."""
    submitted = CounterMetricFamily("inpaint_jobs_submitted", "Jobs accepted, by model.", labels=["model"])
    completed = CounterMetricFamily("inpaint_jobs_completed", "Jobs that ended COMPLETED.", labels=["model"])
    failed = CounterMetricFamily(
        "inpaint_jobs_failed", "Jobs that ended FAILED, by error code.", labels=["model", "error_code"]
    )
    by_status = GaugeMetricFamily("inpaint_jobs", "Jobs now in each status.", labels=["model", "status"])
    totals: dict[str, int] = defaultdict(int)
    statuses: dict[tuple[str, str], int] = defaultdict(int)
    ever: dict[tuple[str, str], int] = defaultdict(int)
    failures: dict[tuple[str, str], int] = defaultdict(int)
    for row, live in [*((r, True) for r in jobs), *((r, False) for r in purged)]:
        totals[row.model] += row.count
        ever[(row.model, row.status)] += row.count
        if live:
            statuses[(row.model, row.status)] += row.count
        if row.status == JobStatus.FAILED.value:
            failures[(row.model, row.error_code or "unknown")] += row.count
    for (model, code), n in sorted(failures.items()):
        failed.add_metric([model, code], n)
    for model, n in sorted(totals.items()):
        submitted.add_metric([model], n)
        completed.add_metric([model], ever.get((model, JobStatus.COMPLETED.value), 0))
        for status in JobStatus:
            by_status.add_metric([model, status.value], statuses.get((model, status.value), 0))
    return iter((submitted, completed, failed, by_status))


def queue_metrics(waiting: dict[str, int], depths: dict[str, int | None]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "inpaint_queue_depth", "Messages waiting in the broker, by Celery queue.", labels=["queue"]
    )
    for queue, n in depths.items():
        if n is not None:  # the broker is unreachable: no sample rather than a wrong one
            depth.add_metric([queue], n)
    jobs = GaugeMetricFamily("inpaint_queue_waiting_jobs", "QUEUED jobs in the database, by queue.", labels=["queue"])
    for queue in sorted({QUEUE_INPAINT, *waiting}):
        jobs.add_metric([queue], waiting.get(queue, 0))
    up = GaugeMetricFamily("inpaint_broker_up", "1 if the broker answered this scrape, else 0.")
    up.add_metric([], int(all(n is not None for n in depths.values())))
    return iter((depth, jobs, up))


def worker_metric(workers: Iterable[dict[str, Any]]) -> Metric:
    """Inference workers (their fleet rows) by queue and state: idle, busy, or offline (a row whose
    heartbeat is stale). Every state of every queue named by a row, and of `inpaint` always, has a
    sample, 0 included, so that an alert can fire on absence."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    queues = {QUEUE_INPAINT}
    for worker in workers:
        state = ("busy" if worker["busy"] else "idle") if worker["online"] else "offline"
        for queue in worker["queues"] or []:
            queues.add(queue)
            counts[(queue, state)] += 1
    family = GaugeMetricFamily(
        "inpaint_workers", "Inference workers by queue and state (idle, busy, offline).", labels=["queue", "state"]
    )
    for queue in sorted(queues):
        for state in WORKER_STATES:
            family.add_metric([queue, state], counts[(queue, state)])
    return family


def webhook_metrics(deliveries: dict[tuple[str, bool], int], purged: dict[str, int] | None = None) -> Iterator[Metric]:
    """`purged`: tallies of the events record retention deleted, by status (final outcomes count on)."""
    purged = purged or {}
    ended = CounterMetricFamily(
        "inpaint_webhook_deliveries", "Webhook events that reached a final outcome.", labels=["outcome"]
    )
    for outcome in WEBHOOK_OUTCOMES:
        ended.add_metric(
            [outcome],
            deliveries.get((outcome, False), 0) + deliveries.get((outcome, True), 0) + purged.get(outcome, 0),
        )
    pending = GaugeMetricFamily("inpaint_webhook_pending", "Webhook events not delivered yet.")
    pending.add_metric([], deliveries.get((PENDING, False), 0) + deliveries.get((PENDING, True), 0))
    retrying = GaugeMetricFamily(
        "inpaint_webhook_retries_pending", "Webhook events waiting for a retry (one attempt or more failed)."
    )
    retrying.add_metric([], deliveries.get((PENDING, True), 0))
    return iter((ended, pending, retrying))


def action_metrics(counters: dict[str, int]) -> Iterator[Metric]:
    sweeper = CounterMetricFamily("inpaint_sweeper_actions", "Jobs the sweeper repaired, by action.", labels=["action"])
    for action in SWEEPER_ACTIONS:
        sweeper.add_metric([action], counters.get(f"sweeper_{action}", 0))
    expired = CounterMetricFamily("inpaint_results_expired", "Jobs whose results the reaper deleted.")
    expired.add_metric([], counters.get(REAPER_EXPIRED, 0))
    purged = CounterMetricFamily(
        "inpaint_jobs_purged", "Job records deleted after INPAINT_RECORD_RETENTION_DAYS (still in the job counters)."
    )
    purged.add_metric([], counters.get(RETENTION_PURGED_JOBS, 0))
    return iter((sweeper, expired, purged))


def duration_metrics(finished: list[FinishedJob], *, window: timedelta) -> Iterator[Metric]:
    span = f"jobs finished in the last {int(window.total_seconds())} s"
    specs: list[tuple[str, str, Callable[[FinishedJob], float | None]]] = [
        ("inpaint_job_queue_seconds", f"Time from submit to start, {span}.", lambda j: j.queue_seconds),
        (
            "inpaint_job_inference_seconds",
            f"Inference time of completed jobs, {span}.",
            lambda j: j.inference_seconds if j.status == JobStatus.COMPLETED.value else None,
        ),
        ("inpaint_job_total_seconds", f"Time from submit to the end, {span}.", lambda j: j.total_seconds),
    ]
    for name, doc, value_of in specs:
        family = GaugeHistogramMetricFamily(name, doc, labels=["model"])
        by_model: dict[str, list[float]] = defaultdict(list)
        for job in finished:
            value = value_of(job)
            if value is not None:
                by_model[job.model].append(value)
        for model, values in sorted(by_model.items()):
            family.add_metric([model], bucket_counts(values), gsum_value=sum(values))
        yield family


def bucket_counts(values: list[float]) -> list[tuple[str, float]]:
    """Cumulative counts per upper bound, as Prometheus buckets, +Inf last."""
    counts = [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in BUCKETS]
    return [*counts, ("+Inf", float(len(values)))]
