"""The Celery app as both sides see it: queue names, task names and broker settings.

The API only publishes, by task name; it never imports the worker. The worker
builds on `make_celery` and registers the tasks. A `sqla+sqlite://` broker URL
(the embedded default) goes through `SQLiteTransport`, which adds WAL, a busy
timeout and a configurable polling interval to kombu's SQLAlchemy transport.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from queue import Empty
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from kombu.transport import redis as kombu_redis
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.json import dumps
from sqlalchemy import create_engine, event

from storage.database.engine import SQLITE_BUSY_TIMEOUT_MS, set_sqlite_pragmas
from storage.settings import Settings

QUEUE_INPAINT = "inpaint"
QUEUE_MAINTENANCE = "maintenance"
QUEUE_WEBHOOKS = "webhooks"

TASK_RUN_JOB = "inpaint.run_job"
TASK_CHECK_IMAGE = "inpaint.check_image"
TASK_REAP_EXPIRED = "maintenance.reap_expired"
TASK_SWEEP = "maintenance.sweep"
TASK_WEBHOOK_DELIVER = "webhooks.deliver"
TASK_WEBHOOK_DISPATCH = "webhooks.dispatch"
TASK_WEBHOOK_JOB_FINISHED = "webhooks.job_finished"
TASK_WEBHOOK_PROGRESS = "webhooks.progress"
WEBHOOK_TASKS = (TASK_WEBHOOK_DELIVER, TASK_WEBHOOK_DISPATCH, TASK_WEBHOOK_JOB_FINISHED, TASK_WEBHOOK_PROGRESS)

# Publishing fails fast: the API answers instead of hanging while the broker is down.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.05, "interval_step": 0.1, "interval_max": 0.2}


log = logging.getLogger(__name__)


class DroppedMessages:
    """Broker messages this process took off a queue and dropped because they could not be decoded or
    delivered (not JSON, not kombu's envelope). Thread-safe; the worker's /metrics reports the count.

    Dropping is safe: a message only carries a job id, and the job's row, not the broker, decides whether
    the job still needs running (the sweeper republishes a queued job that has no message)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def record(self, transport: str) -> None:
        with self._lock:
            self.count += 1
        log.exception("dropped a %s broker message that could not be decoded or delivered", transport)


DROPPED = DroppedMessages()


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, except that a message it cannot decode or deliver is dropped and counted
    (DROPPED) instead of raising out of the consumer, which Celery treats as unrecoverable: one
    `LPUSH inpaint 'not json'` would stop the worker."""

    def _brpop_read(self, **options: Any) -> Any:
        try:
            return super()._brpop_read(**options)  # type: ignore[no-untyped-call]
        except (ValueError, KeyError, TypeError, AttributeError):
            # Decoding the item (JSONDecodeError is a ValueError) or building the message from it (a missing
            # or mistyped field of the envelope). Caught before kombu's connection errors, which list KeyError:
            # Celery would take a bad message for a lost connection and reconnect for every one.
            DROPPED.record("redis")
            return True

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        try:
            return super()._get(queue)  # type: ignore[no-untyped-call]
        except ValueError:  # JSON that does not decode: the message is already off the list
            DROPPED.record("redis")
            raise Empty() from None


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


class SQLiteChannel(kombu_sqla.Channel):
    def _engine_from_config(self) -> Any:
        options = dict(self.connection.client.transport_options)
        for name in (
            "polling_interval",
            "queue_tablename",
            "message_tablename",
            "callback",
            "errback",
            "max_retries",
            "interval_start",
            "interval_step",
            "interval_max",
            "retry_errors",
        ):
            options.pop(name, None)
        options.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        engine = create_engine(self.connection.client.hostname, **options)
        event.listen(engine, "connect", set_sqlite_pragmas)
        return engine

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # kombu sqlalchemy Channel's own
        """One INSERT in a transaction of its own, with the queue's id cached: kombu's own looks the
        queue up and goes through an ORM session for every message, a third of a submit's CPU."""
        queue_ids: dict[str, int] = self.__dict__.setdefault("_queue_ids", {})
        if queue not in queue_ids:
            queue_ids[queue] = self._get_or_create(queue).id  # type: ignore[no-untyped-call]
        engine, _ = self._open()  # type: ignore[no-untyped-call]
        body = dumps(payload)  # type: ignore[no-untyped-call]
        row = {"queue_id": queue_ids[queue], "payload": body, "visible": True, "version": 1}
        with engine.begin() as conn:
            conn.execute(self.message_cls.__table__.insert().values(**row))  # timestamp NULL, as kombu's own

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        """kombu's, except that a payload that is not a message (not JSON, or JSON without kombu's envelope)
        is dropped and counted (DROPPED), not raised out of the consumer, which would stop the worker.
        kombu has already marked it invisible, so it is not read again."""
        try:
            payload = super()._get(queue)  # type: ignore[no-untyped-call]
            self.Message(payload, channel=self)  # type: ignore[no-untyped-call]  # as delivery does first: raises for a bad envelope
        except Empty:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            DROPPED.record("sqlite")
            raise Empty() from None
        return payload


class SQLiteTransport(kombu_sqla.Transport):
    Channel = SQLiteChannel


def make_celery(settings: Settings, *, main: str = "inpaint-queue") -> Celery:
    app = Celery(main)
    url = settings.resolved_broker_url
    transport_options: dict[str, Any] = {}
    if url.startswith("sqla+sqlite"):
        url = url.removeprefix("sqla+")
        app.conf.broker_transport = f"{__name__}:SQLiteTransport"
        transport_options["polling_interval"] = settings.broker_polling_interval
    elif url.startswith(("redis://", "rediss://")):
        if url.startswith("redis://"):  # rediss:// keeps kombu's own transport, which sets up TLS from the scheme
            app.conf.broker_transport = f"{__name__}:RedisTransport"
        # Long inference must not look like a lost message; the job row, not
        # the broker, is what decides whether a job still needs running.
        transport_options["visibility_timeout"] = 6 * 3600
    app.conf.update(
        broker_url=url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE_INPAINT,
        task_routes={
            TASK_REAP_EXPIRED: {"queue": QUEUE_MAINTENANCE},
            TASK_SWEEP: {"queue": QUEUE_MAINTENANCE},
            **{name: {"queue": QUEUE_WEBHOOKS} for name in WEBHOOK_TASKS},
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def publish_job(app: Celery, job_id: str, *, queue: str) -> None:
    """Send the job's task by name. Messages carry the id, never image bytes."""
    app.send_task(TASK_RUN_JOB, args=[job_id], queue=queue, retry=True, retry_policy=PUBLISH_RETRY_POLICY)


def queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in the broker for `queue` (not counting those a worker holds), or None.

    Redis keeps no key for an empty list, so its "no such queue" means 0 (after a wipe of
    the broker's data, exactly the case where jobs wait with no message left).
    """
    return queue_sizes(app, [queue])[queue]


def queue_sizes(app: Celery, queues: Iterable[str]) -> dict[str, int | None]:
    """Messages waiting per queue over one connection; a queue the broker does not know holds 0.
    All None when the broker cannot be reached."""
    names = tuple(queues)
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            return {queue: _size_of(channel, queue) for queue in names}
    except Exception:  # noqa: BLE001 - an unreachable broker is reported, not raised
        return dict.fromkeys(names)


def _size_of(channel: Any, queue: str) -> int:
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError:  # not declared yet, or (Redis) declared and empty: the list key is gone
        return 0


def publish_task(app: Celery, name: str, *args: object, queue: str | None = None) -> None:
    """Send any task by name, to `queue` or its routed queue."""
    options = {"queue": queue} if queue else {}
    app.send_task(name, args=list(args), retry=True, retry_policy=PUBLISH_RETRY_POLICY, **options)
