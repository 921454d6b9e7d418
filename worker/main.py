"""`inpaint-worker`: run a Celery worker, the beat scheduler, or write a tiny test pipeline.

inpaint-worker run [--queues inpaint] [--pool solo]   # GPU worker: one process per GPU
inpaint-worker run --queues maintenance --pool threads --concurrency 4   # light worker
inpaint-worker beat                                   # periodic scheduler (reaper), one at a time
inpaint-worker health --queues inpaint                # exit 0 if this container's worker consumes
inpaint-worker health --beat                          # exit 0 if beat keeps its schedule
inpaint-worker tiny-model DIR [--kind sd15|sdxl|controlnet|...] [--register SLUG] [--asset NAME]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from storage.broker import QUEUE_INPAINT
from storage.logs import configure_logging
from storage.settings import Settings, load_settings
from worker.app import make_worker_celery, runs_inference, start_worker
from worker.beat_lock import acquire_or_stop, beat_lock, watch_lock
from worker.health import check_beat, check_worker, within_deadline, worker_name

TINY_KINDS = (
    "sd15",
    "sdxl",
    "sdxl-plain",
    "controlnet",
    "vae",
    "lora-sd15",
    "lora-sdxl",
    "embeddings-sd15",
    "embeddings-sdxl",
    "safety-checker",
    "depth",
)


def write_tiny_command(settings: Settings, args: argparse.Namespace) -> None:
    # The tiny-model writers import torch and diffusers: only this command loads them.
    from worker.tiny.assets import register_tiny, write_tiny

    source = write_tiny(Path(args.directory).resolve(), args.kind)
    sys.stdout.write(f"wrote a tiny {args.kind} to {source}\n")
    if args.register or args.asset:
        register_tiny(settings, args.kind, source, slug=args.register, asset=args.asset)
        sys.stdout.write(f"registered it as {args.register or args.asset!r}\n")


def schedule_path(settings: Settings, given: str | None) -> Path:
    return Path(given) if given else settings.data_dir / "celerybeat-schedule"


def beat_command(settings: Settings, args: argparse.Namespace, level: str) -> None:
    """Take the beat lock (worker.beat_lock), waiting while another beat holds it, then schedule."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = schedule_path(settings, args.schedule)
    lock = beat_lock(settings.resolved_database_url, schedule)
    if not acquire_or_stop(lock):
        return  # stopped while waiting
    watch_lock(lock)
    make_worker_celery(settings).start(["beat", "-l", level, "-s", str(schedule)])


def health_command(settings: Settings, args: argparse.Namespace) -> None:
    """Exit 0 when healthy; else 1, with the reason on stderr (worker.health)."""
    if args.beat:
        schedule = schedule_path(settings, args.schedule)
        verdict = within_deadline(lambda: check_beat(settings, schedule))
    else:
        name, inference = worker_name(args.queues, args.name), runs_inference(args.queues.split(","))
        verdict = within_deadline(
            lambda: check_worker(settings, make_worker_celery(settings), name, inference=inference)
        )
    if not verdict.healthy:
        sys.stderr.write(f"unhealthy: {verdict.reason}\n")
        sys.exit(1)
    sys.stdout.write(f"healthy: {verdict.reason}\n")


def main(argv: list[str] | None = None) -> None:
    started = datetime.now(UTC)  # before the heavy imports: admin commands issued after it are carried out
    parser = argparse.ArgumentParser(
        prog="inpaint-worker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume queues")
    run.add_argument("--queues", default=QUEUE_INPAINT, help="comma-separated (default: %(default)s)")
    run.add_argument("--pool", default="solo", choices=["solo", "threads", "prefork"])
    run.add_argument("--concurrency", type=int, default=1)
    run.add_argument("--name", help="worker name (default: QUEUES@hostname)")
    beat = sub.add_parser("beat", help="send the periodic tasks")
    beat.add_argument("--schedule", help="beat's state file (default: DATA_DIR/celerybeat-schedule)")
    health = sub.add_parser("health", help="exit 0 if this container's worker or beat does its work")
    health.add_argument("--queues", default=QUEUE_INPAINT, help="the worker's --queues (default: %(default)s)")
    health.add_argument("--name", help="the worker's --name (default: QUEUES@hostname)")
    health.add_argument("--beat", action="store_true", help="check beat instead of a worker")
    health.add_argument("--schedule", help="beat's --schedule (default: DATA_DIR/celerybeat-schedule)")
    tiny = sub.add_parser("tiny-model", help="write a tiny random-weight pipeline or model asset")
    tiny.add_argument("directory")
    tiny.add_argument("--kind", default="sd15", choices=TINY_KINDS, help="what to write (default: sd15)")
    tiny.add_argument("--register", metavar="SLUG", help="also register a pipeline under this model slug")
    tiny.add_argument("--asset", metavar="NAME", help="also register it as a named asset (base_model, ...)")
    args = parser.parse_args(argv)

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "tiny-model":
        write_tiny_command(settings, args)
        return
    if args.command == "health":
        health_command(settings, args)
        return

    level = settings.log_level.upper()
    if args.command == "beat":
        beat_command(settings, args, level)
        return
    queues = args.queues.split(",")
    process = start_worker(settings, queues=queues, started=started)
    name = worker_name(args.queues, args.name)
    process.celery.worker_main(
        [
            "worker",
            "-Q",
            args.queues,
            "-P",
            args.pool,
            "-c",
            str(args.concurrency),
            "-n",
            name,
            "-l",
            level,
            "--without-gossip",
            "--without-mingle",
        ]
    )
