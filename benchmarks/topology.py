"""Starting what a benchmark measures: the servers, the service's processes and the tiny pipeline.

Two topologies, the same code as production with different URLs:
- "embedded": SQLite jobs, a local image directory and the SQLite broker (what ./scripts/serve runs);
- "real": PostgreSQL, Redis and an S3 server (moto), started here on loopback.

The servers and the `Stack` (processes started from this virtual environment's
console scripts) are the test suite's own (tests/support), so benchmarks and tests
run the service the same way. Only the API and one inference worker are started:
the maintenance worker and beat do nothing on a benchmark's time scale.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import sqlalchemy as sa

from tests.support import services as svc
from tests.support.stack import BIN, Stack

TOPOLOGIES = ("embedded", "real")
TINY_SLUG = "tiny-sd-inpaint"


@dataclass
class Servers:
    """URLs of the Redis, PostgreSQL and S3 servers of the real topology, and their pids."""

    redis_url: str
    postgres_url: str
    s3_endpoint: str
    pids: dict[str, set[int]]


def _postmaster_pid(pg_dir: str) -> int:
    return int((Path(pg_dir) / "data" / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def running_servers(needed: bool) -> Iterator[Servers | None]:
    """Redis, PostgreSQL and moto on loopback for the duration, or None when not `needed`."""
    if not needed:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="iq-bench-") as state:
        env = svc.up(Path(state))
        try:
            record = json.loads((Path(state) / "services.json").read_text())
            yield Servers(
                redis_url=env["INPAINT_TEST_REDIS_URL"],
                postgres_url=env["INPAINT_TEST_POSTGRES_URL"],
                s3_endpoint=env["INPAINT_TEST_S3_ENDPOINT"],
                pids={
                    "postgres": {_postmaster_pid(record["pg_dir"])},
                    "redis": {int(record["redis_pid"])},
                    "s3": {int(record["moto_pid"])},
                },
            )
        finally:
            svc.down(Path(state))


def stack_env(topology: str, workdir: Path, servers: Servers | None, extra: dict[str, str]) -> dict[str, str]:
    """Environment of the service's processes. Defaults are the product's, except where `extra` says."""
    env = {
        "INPAINT_DATA_DIR": str(workdir / "data"),
        "INPAINT_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if topology == "real":
        assert servers is not None
        bucket = f"iq-bench-{uuid.uuid4().hex[:10]}"
        boto3.client(
            "s3",
            endpoint_url=servers.s3_endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        env.update(
            {
                "INPAINT_DATABASE_URL": create_database(servers.postgres_url),
                "INPAINT_BROKER_URL": servers.redis_url + "/0",
                "INPAINT_STORAGE_BACKEND": "s3",
                "INPAINT_S3_ENDPOINT_URL": servers.s3_endpoint,
                "INPAINT_S3_BUCKET": bucket,
                "INPAINT_S3_ACCESS_KEY_ID": "test",
                "INPAINT_S3_SECRET_ACCESS_KEY": "test",
                "INPAINT_SECRET_KEY": "a-benchmark-secret-that-is-long-enough",
            }
        )
    env.update(extra)
    return env


def create_database(admin_url: str) -> str:
    """A fresh, empty PostgreSQL database on the server of `admin_url`; its URL."""
    name = f"iq_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def write_tiny_model(directory: Path) -> Path:
    """The tiny random SD inpainting pipeline, written by the documented CLI command."""
    if not (directory / "model_index.json").is_file():
        env = {**os.environ, "INPAINT_DATA_DIR": str(directory.parent / "data")}
        subprocess.run(
            [str(BIN / "inpaint-worker"), "tiny-model", str(directory)], check=True, capture_output=True, env=env
        )
    return directory


@contextlib.contextmanager
def running_stack(
    topology: str,
    workdir: Path,
    servers: Servers | None,
    *,
    worker: bool = True,
    models: dict[str, Path] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A migrated stack with a user key, its API (and worker) running; `models` registered as sd15 slugs."""
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(name=topology, workdir=workdir, env=stack_env(topology, workdir, servers, extra_env or {}))
    try:
        stack.cli("inpaint-admin", "migrate")
        for slug, path in (models or {}).items():
            stack.cli(
                "inpaint-admin",
                "models",
                "register",
                slug,
                str(path),
                "--family",
                "sd15",
                "--max-side",
                "512",
                "--default-size",
                "64",
                "--steps",
                "1:50:2",
            )
        stack.user_key = create_key(stack, "bench")
        if not worker:  # submits are measured without a worker: queue them (api.serving)
            stack.env["INPAINT_SUBMIT_UNSERVABLE"] = "accept"
        stack.start_api()
        if worker:
            stack.start_worker()
        yield stack
    finally:
        stack.stop_all()


def create_key(stack: Stack, name: str) -> str:
    """A new user key of the stack's, by the documented CLI command."""
    output = stack.cli("inpaint-admin", "keys", "create", "--name", name)
    return next(word for word in output.split() if word.startswith("iq_"))


def stack_pids(stack: Stack) -> dict[str, set[int]]:
    """Roles for CpuMeter: the stack's processes, each in a session of its own."""
    return {name: {proc.pid} for name, proc in stack.procs.items()}


@contextlib.contextmanager
def frozen_postgres(servers: Servers) -> Iterator[None]:
    """PostgreSQL stopped (SIGSTOP) for the duration, as a hung database host would be, and continued
    (SIGCONT) at the end, whatever happens. The postmaster stops first, so that it forks no backend
    the freeze would miss; then its children (backends, background workers)."""
    (postmaster,) = servers.pids["postgres"]
    os.kill(postmaster, signal.SIGSTOP)
    tree = [postmaster, *child_pids(postmaster)]
    try:
        _signal_all(tree[1:], signal.SIGSTOP)
        yield
    finally:
        _signal_all(reversed(tree), signal.SIGCONT)


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:  # after the name: state, then ppid
            children.append(int(entry.name))
    return children


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
