"""`inpaint`: submit jobs, follow them with a progress bar, save their images.

    inpaint submit photo.png mask.png --prompt "a red apple" [--model sd1.5-inpainting] [--out DIR]
    inpaint status ID | inpaint cancel ID | inpaint download ID | inpaint models
    inpaint batch jobs.jsonl [--out DIR]

The server and key come from --url/--key or INPAINT_API_URL/INPAINT_API_KEY. Saved file paths
go to stdout, one a line; progress and messages to stderr.
Exit codes: 0 success; 1 a job failed, was rejected, or the server refused; 2 bad usage or
input; 3 not finished in time (the job keeps running); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from inpaint_client.batch_run import UsageError, run_batch
from inpaint_client.client import Client
from inpaint_client.errors import APIError, InferenceFailed, InferenceTimeout, InpaintError
from inpaint_client.progress import ProgressBar, describe_job

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v`; v is read as JSON when it parses (numbers, true/false, lists), else kept as a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "seed": args.seed,
        **dict(args.param),
    }
    job = client.submit(args.model, image=args.image, mask=args.mask, idempotency_key=args.idempotency_key, **params)
    say(f"submitted {job.request_id} ({args.model})" + (" (idempotent replay)" if job.replayed else ""))
    if args.no_wait:
        emit(job.request_id)
        return EXIT_OK
    bar = ProgressBar()
    try:
        result = job.wait(
            timeout=args.timeout,
            interval=args.interval,
            stream=not args.poll,
            on_progress=lambda status: bar.show(*describe_job(status)),
        )
    except KeyboardInterrupt:
        bar.close()
        say(f"interrupted; {job.request_id} keeps running (stop it with: inpaint cancel {job.request_id})")
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    for path in job.download(args.out, result=result):
        emit(str(path))
    metrics = result.get("metrics") or {}
    say(
        f"completed {job.request_id}: seed {result.get('seed')}, "
        f"inference {metrics.get('inference_time', 0):.2f} s, queued {metrics.get('queue_time', 0):.2f} s"
    )
    return EXIT_OK


def describe_status(body: dict[str, Any]) -> str:
    state, parts = body["status"], [body["request_id"], body["status"]]
    if state == "QUEUED":
        parts.append(f"queue position {body.get('queue_position')}")
    elif state == "PROCESSING":
        progress = body.get("progress") or {}
        parts.append(f"step {progress.get('step')}/{progress.get('total')} ({progress.get('percent')}%)")
    elif state == "FAILED":
        parts.append(f"{body.get('error_code')}: {body.get('error')}")
    else:
        spent = (body.get("metrics") or {}).get("inference_time")
        parts.append(f"inference {spent} s, expires {body.get('expires_at')}")
    return "  ".join(str(p) for p in parts)


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    body = client.status(args.request_id)
    emit(json.dumps(body, indent=2) if args.json else describe_status(body))
    return EXIT_FAILED if body["status"] == "FAILED" else EXIT_OK


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    answer = client.cancel(args.request_id)
    emit(f"{args.request_id}: {answer['outcome'].replace('_', ' ')}")
    return EXIT_OK if answer["cancelled"] else EXIT_FAILED


def cmd_download(client: Client, args: argparse.Namespace) -> int:
    result = client.result(args.request_id)
    if result["status"] != "COMPLETED":
        say(f"{args.request_id} is {result['status']}: nothing to download yet")
        return EXIT_FAILED
    for path in client.download(result, args.out):
        emit(str(path))
    return EXIT_OK


def cmd_models(client: Client, args: argparse.Namespace) -> int:
    for model in client.models():
        emit(f"{model['slug']}\t{model.get('size_rule', '')}")
    return EXIT_OK


def cmd_batch(client: Client, args: argparse.Namespace) -> int:
    outcome = run_batch(
        client,
        Path(args.file),
        model=args.model,
        out=args.out,
        timeout=args.timeout,
        interval=args.interval,
        emit=emit,
        say=say,
    )
    return EXIT_OK if outcome.all_completed else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inpaint",
        description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok, 1 failed or refused, 2 usage, 3 timed out.",
    )
    parser.add_argument("--url", help="server root (default: INPAINT_API_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--key", help="API key (default: INPAINT_API_KEY)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", help="inpaint one image and save the results")
    submit.add_argument("image", help="image: a local file or an http(s) URL")
    submit.add_argument("mask", help="mask (white repaints, black keeps): a local file or an http(s) URL")
    submit.add_argument("--prompt", required=True)
    submit.add_argument("--negative-prompt")
    submit.add_argument("--seed", type=int)
    submit.add_argument("--model", default="sd1.5-inpainting", help="model slug (default: %(default)s)")
    submit.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other field, e.g. --param num_inference_steps=30 (repeatable)",
    )
    submit.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")
    submit.add_argument("--no-wait", action="store_true", help="print the request id and exit")
    submit.add_argument("--poll", action="store_true", help="poll the status instead of following events")
    submit.set_defaults(run=cmd_submit)

    for name, handler, text in (
        ("status", cmd_status, "show a job's status (exit 1 if it FAILED)"),
        ("cancel", cmd_cancel, "cancel a job (exit 1 if it had already ended)"),
        ("download", cmd_download, "save a completed job's images"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("request_id")
        sub.set_defaults(run=handler)
    commands.choices["status"].add_argument("--json", action="store_true", help="print the status body")

    batch = commands.add_parser("batch", help="submit every job of a JSONL file, one bar for all")
    batch.add_argument("file", help="one JSON body a line, with `model` (or --model); paths are relative to it")
    batch.add_argument("--model", help="model of the lines that name none")
    batch.set_defaults(run=cmd_batch)
    commands.add_parser("models", help="list the server's models").set_defaults(run=cmd_models)

    for sub in (submit, batch, commands.choices["download"]):
        sub.add_argument("--out", default=".", help="directory for the images (default: current)")
    for sub in (submit, batch):
        sub.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default: %(default)s)")
        sub.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Client(args.url, args.key) as client:
            return int(args.run(client, args))
    except InferenceFailed as exc:
        say(f"error: request {exc.request_id} failed ({exc.error_code}): {exc.detail}")
        return EXIT_FAILED
    except InferenceTimeout as exc:
        say(f"error: {exc}; it keeps running: inpaint status {exc.request_id}")
        return EXIT_TIMEOUT
    except APIError as exc:
        say(f"error: the server answered {exc}")
        return EXIT_FAILED
    except (UsageError, OSError, InpaintError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except httpx.TransportError as exc:
        say(f"error: cannot reach the server ({type(exc).__name__}: {exc})")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
