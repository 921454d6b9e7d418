"""Does a webhook receiver that never answers slow inference down? It must not.

Runs the embedded stack (real API, inference worker, ops worker, beat), then in one
run submits N tiny-diffusers jobs with no webhook, and N jobs whose webhook points at
a receiver that accepts the connection and never answers (each attempt waits the
full delivery timeout). Prints jobs per minute for both and their ratio.

    .venv/bin/python benchmarks/webhook_isolation.py [--jobs 20] [--steps 8]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.images import job_body  # noqa: E402
from tests.support.stack import BIN, Stack  # noqa: E402


def black_hole() -> tuple[socket.socket, int]:
    """A listener that accepts connections and never reads or answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    return server, server.getsockname()[1]


def run_batch(stack: Stack, jobs: int, steps: int, webhook: str | None) -> float:
    """Jobs per minute, from the first submit until the last job reads COMPLETED."""
    extra = {"webhook": webhook} if webhook else {}
    started = time.monotonic()
    ids = [stack.submit("tiny-sd-inpaint", job_body(num_inference_steps=steps, **extra)) for _ in range(jobs)]
    for job_id in ids:
        assert stack.wait(job_id, timeout=600)["status"] == "COMPLETED"
    return jobs / (time.monotonic() - started) * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two modes this many times")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="iq-bench-webhooks-"))
    tiny = workdir / "tiny"
    subprocess.run(
        [str(BIN / "inpaint-worker"), "tiny-model", str(tiny)],
        check=True,
        capture_output=True,
        env={"INPAINT_DATA_DIR": str(workdir / "scratch"), "PATH": "/usr/bin:/bin"},
    )
    stack = Stack(
        name="embedded",
        workdir=workdir,
        env={
            "INPAINT_DATA_DIR": str(workdir / "data"),
            "INPAINT_ALLOW_LOOPBACK_URLS": "true",
            "INPAINT_WEBHOOK_TIMEOUT_SECONDS": "15",
            "HF_HUB_OFFLINE": "1",
        },
    )
    stack.cli("inpaint-admin", "migrate")
    stack.cli(
        "inpaint-admin",
        "models",
        "register",
        "tiny-sd-inpaint",
        str(tiny),
        "--family",
        "sd15",
        "--max-side",
        "128",
        "--default-size",
        "64",
        "--steps",
        "1:50:2",
    )
    hole, port = black_hole()
    try:
        stack.start_all()
        run_batch(stack, 2, args.steps, None)  # warm-up: the pipeline loads once
        plain, hanging = [], []
        for _ in range(args.rounds):  # alternating cancels most drift of a shared machine
            plain.append(run_batch(stack, args.jobs, args.steps, None))
            hanging.append(run_batch(stack, args.jobs, args.steps, f"http://127.0.0.1:{port}/never"))
    finally:
        stack.stop_all()
        hole.close()
    mean_plain, mean_hanging = sum(plain) / len(plain), sum(hanging) / len(hanging)
    print(
        f"jobs: {args.jobs} per run, {args.rounds} alternating rounds, tiny SD pipeline at 64 px, "
        f"{args.steps} steps, embedded stack"
    )
    print(f"no webhook:                        {mean_plain:7.1f} jobs/min  {[round(x, 1) for x in plain]}")
    print(f"webhook that never answers (15 s): {mean_hanging:7.1f} jobs/min  {[round(x, 1) for x in hanging]}")
    print(f"ratio (hanging / none):            {mean_hanging / mean_plain:7.2f}")


if __name__ == "__main__":
    main()
