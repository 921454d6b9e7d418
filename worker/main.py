"""`inpaint-worker`: run a Celery worker, the beat scheduler, or write a tiny test pipeline.

    inpaint-worker run [--queues inpaint] [--pool solo]   # GPU worker: one process per GPU
    inpaint-worker run --queues maintenance --pool threads --concurrency 4   # light worker
    inpaint-worker beat                                   # periodic scheduler (reaper)
    inpaint-worker tiny-model DIR [--register tiny-sd-inpaint]
"""

from __future__ import annotations

import argparse
import socket

from storage.broker import QUEUE_INPAINT
from storage.logs import configure_logging
from storage.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inpaint-worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume queues")
    run.add_argument("--queues", default=QUEUE_INPAINT, help="comma-separated (default: %(default)s)")
    run.add_argument("--pool", default="solo", choices=["solo", "threads", "prefork"])
    run.add_argument("--concurrency", type=int, default=1)
    run.add_argument("--name", help="worker name (default: QUEUES@hostname)")
    beat = sub.add_parser("beat", help="send the periodic tasks")
    beat.add_argument("--schedule", help="beat's state file (default: DATA_DIR/celerybeat-schedule)")
    tiny = sub.add_parser("tiny-model", help="write a tiny random-weight SD inpainting pipeline")
    tiny.add_argument("directory")
    tiny.add_argument("--register", metavar="SLUG", help="also register it under this model slug")
    args = parser.parse_args(argv)

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "tiny-model":
        from worker.tiny import write_tiny_model

        write_tiny_model(settings, args.directory, slug=args.register)
        return

    from worker.app import build_worker

    app, context, metrics = build_worker(settings)
    level = settings.log_level.upper()
    if args.command == "run":  # before warm-up, so loading models shows; the main process: see worker/metrics.py
        metrics.serve(settings.worker_metrics_port)
    if args.command == "run" and settings.warmup_models and QUEUE_INPAINT in args.queues.split(","):
        from worker.warmup import warm_up

        warm_up(settings, context())
    if args.command == "run":
        name = args.name or f"{args.queues.replace(',', '+')}@{socket.gethostname()}"
        app.worker_main(["worker", "-Q", args.queues, "-P", args.pool, "-c", str(args.concurrency), "-n", name,
                         "-l", level, "--without-gossip", "--without-mingle"])
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        schedule = args.schedule or str(settings.data_dir / "celerybeat-schedule")
        app.start(["beat", "-l", level, "-s", schedule])
