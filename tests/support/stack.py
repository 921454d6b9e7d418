"""A running Inpaint Queue, as real processes: the same entry points docker-compose runs.

A Stack is either "embedded" (SQLite, local images, SQLite broker: what
./scripts/serve runs) or "production" (PostgreSQL, Redis, S3 via moto).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port, new_postgres_database, s3_client, unique_name

BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED"}


@dataclass
class Stack:
    name: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    worker_metrics_port: int = field(default_factory=free_port)
    ops_metrics_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Any] = field(default_factory=dict)
    admin_key: str = ""
    user_key: str = ""
    admin_webhook_secret: str = ""
    user_webhook_secret: str = ""
    supervised: bool = False
    """Restart a process that exits on its own (not through stop()), as compose's restart policy does."""
    restarts: list[str] = field(default_factory=list)
    """The names of the processes restarted, in order."""
    commands: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    told: set[str] = field(default_factory=set)
    """Every job id a submit through `submit` was answered with: what clients were told exists."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}

    # -- processes ---------------------------------------------------------
    def cli(self, *argv: str) -> str:
        result = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], env=self.process_env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def register_missing_model(self, slug: str, where: Path) -> None:
        """Register an SD 1.5 model whose folder holds a model_index.json and no weights: workers report
        it present (api.serving lets its submits through), and its first job ends FAILED
        `model_unavailable` when the load fails, with credits, webhooks and 422s to check. After that
        failure the worker reports the model `failed` and further submits to it are refused with 503."""
        folder = where / f"missing-weights-{slug}"
        folder.mkdir(parents=True, exist_ok=True)
        index = {
            "_class_name": "StableDiffusionInpaintPipeline",
            "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"],
        }
        (folder / "model_index.json").write_text(json.dumps(index))
        self.cli(
            "inpaint-admin",
            "models",
            "register",
            slug,
            str(folder),
            "--family",
            "sd15",
            "--default-size",
            "64",
            "--max-side",
            "128",
            "--steps",
            "1:10:2",
        )

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with self.lock:
            return self._start(name, argv, env)

    def _start(self, name: str, argv: tuple[str, ...], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        self.commands[name] = (argv, env)
        if name in self.logs:
            self.logs.pop(name).close()
        log = self.logs[name] = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env={**self.process_env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        with self.lock:
            proc = self.procs.pop(name, None)
        try:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        finally:
            if name in self.logs:
                self.logs.pop(name).close()

    def start_api(self) -> None:
        self.start("api", "inpaint-api")
        self.wait_ready()

    def start_worker(self) -> None:
        self.start(
            "worker",
            "inpaint-worker",
            "run",
            "--queues",
            "inpaint",
            env={"INPAINT_WORKER_METRICS_PORT": str(self.worker_metrics_port)},
        )
        if "api" in self.procs:
            self.wait_ready(model="erase")  # submits are refused until a worker has joined (api.serving)

    def start_ops(self) -> None:
        self.start(
            "ops",
            "inpaint-worker",
            "run",
            "--queues",
            "maintenance,webhooks",
            "--pool",
            "threads",
            "--concurrency",
            "8",
            env={"INPAINT_WORKER_METRICS_PORT": str(self.ops_metrics_port)},
        )

    @contextlib.contextmanager
    def worker_stopped(self) -> Iterator[None]:
        """The inference worker stopped, and the API restarted to queue what no worker can serve now
        (INPAINT_SUBMIT_UNSERVABLE=accept, as a deployment that scales workers from zero): submits wait
        in the queue. Both are back as they were afterwards."""
        self.stop("worker")
        self.stop("api")
        self.start("api", "inpaint-api", env={"INPAINT_SUBMIT_UNSERVABLE": "accept"})
        self.wait_ready()
        try:
            yield
        finally:
            self.stop("api")
            self.start_api()
            self.start_worker()

    def start_all(self) -> None:
        self.cli("inpaint-admin", "migrate")
        self.admin_key, self.admin_webhook_secret = _keys_of(
            self.cli("inpaint-admin", "keys", "create", "--name", "admin", "--admin")
        )
        self.user_key, self.user_webhook_secret = _keys_of(
            self.cli("inpaint-admin", "keys", "create", "--name", "user")
        )
        self.start_api()
        self.start_worker()
        self.start_ops()
        self.start("beat", "inpaint-worker", "beat", "--schedule", str(self.workdir / "beat-schedule"))
        if self.supervised:
            threading.Thread(target=self.supervise, name=f"supervise-{self.name}", daemon=True).start()

    def supervise(self) -> None:
        while not self.stopping.wait(0.5):
            with self.lock:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is not None:
                        self.restarts.append(name)
                        self.logs[name].write(f"\n--- exited with {proc.returncode}; restarted ---\n".encode())
                        argv, env = self.commands[name]
                        self._start(name, argv, env)

    def stop_all(self) -> None:
        self.stopping.set()
        for name in list(self.procs):
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_messages(self, name: str) -> str:
        """The process's JSON log lines as `message request_id=ID` text, one a line (other lines dropped)."""
        lines = []
        for line in self.log(name).splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                job = f" request_id={record['request_id']}" if "request_id" in record else ""
                lines.append(f"{record['message']}{job}")
        return "\n".join(lines)

    def wait_ready(self, timeout: float = 60, *, model: str | None = None) -> None:
        """Until /readyz is 200; with `model`, until an online worker can serve it too."""
        deadline = time.monotonic() + timeout
        params = {"model": model} if model else {}
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", params=params, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")
            time.sleep(0.1)
        what, log = ("no worker could serve " + model, "worker") if model else ("the API did not become ready", "api")
        raise TimeoutError(f"{what}:\n{self.log(log)[-3000:]}")

    # -- HTTP --------------------------------------------------------------
    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"x-api-key": key if key is not None else self.user_key}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def submit(self, model: str, body: dict[str, Any], key: str | None = None) -> str:
        with self.client(key) as client:
            response = client.post(f"/v2/{model}", json=body)
        assert response.status_code == 200, response.text
        job_id = str(response.json()["request_id"])
        self.told.add(job_id)
        return job_id

    def wait(
        self, job_id: str, *, timeout: float = 300, key: str | None = None, until: set[str] = TERMINAL
    ) -> dict[str, Any]:
        """Poll the status route until the job reaches one of `until`; return that status body."""
        deadline = time.monotonic() + timeout
        with self.client(key) as client:
            while time.monotonic() < deadline:
                body: dict[str, Any] = client.get(f"/v2/requests/{job_id}/status").json()
                if body.get("status") in until:
                    return body
                time.sleep(0.05)
        raise TimeoutError(f"job {job_id} not in {until} after {timeout} s; worker log:\n{self.log('worker')[-3000:]}")


def _keys_of(output: str) -> tuple[str, str]:
    """(API key, webhook secret) from the output of `inpaint-admin keys create`."""
    key = re.search(r"(iq_[A-Za-z0-9_-]+)", output)
    secret = re.search(r"(whsec_[A-Za-z0-9+/=]+)", output)
    assert key and secret, output
    return key.group(1), secret.group(1)


def stack_env(kind: str, workdir: Path, services: dict[str, str]) -> dict[str, str]:
    env = {
        "INPAINT_DATA_DIR": str(workdir / "data"),
        "INPAINT_ALLOW_LOOPBACK_URLS": "true",
        "INPAINT_REAPER_INTERVAL_SECONDS": "1",
        "INPAINT_PROGRESS_INTERVAL_SECONDS": "0.05",
        "INPAINT_WORKER_HEARTBEAT_SECONDS": "0.5",
        "OMP_NUM_THREADS": "1",  # 2 shared cores: more torch threads only contend
        "INPAINT_WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,1,1,2,3",
        "INPAINT_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "0.5",
        "INPAINT_WEBHOOK_TIMEOUT_SECONDS": "3",
        "INPAINT_WEBHOOK_PROGRESS_INTERVAL_SECONDS": "0.2",
        "INPAINT_SYNC_WAIT_SECONDS": "10",
        "INPAINT_LOG_LEVEL": "INFO",
        # Tests submit in bursts with one key; the limiter is tested with per-key limits.
        "INPAINT_RATE_LIMIT_PER_MINUTE": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if kind == "production":
        bucket = unique_name("iq-results-")
        s3_client(services["INPAINT_TEST_S3_ENDPOINT"]).create_bucket(Bucket=bucket)
        env.update(
            {
                "INPAINT_ENVIRONMENT": "development",  # the loopback switch is refused in production
                "INPAINT_DATABASE_URL": new_postgres_database(services["INPAINT_TEST_POSTGRES_URL"]),
                "INPAINT_BROKER_URL": services["INPAINT_TEST_REDIS_URL"] + f"/{_next_redis_db()}",
                "INPAINT_STORAGE_BACKEND": "s3",
                "INPAINT_S3_ENDPOINT_URL": services["INPAINT_TEST_S3_ENDPOINT"],
                "INPAINT_S3_BUCKET": bucket,
                "INPAINT_S3_ACCESS_KEY_ID": "test",
                "INPAINT_S3_SECRET_ACCESS_KEY": "test",
                "INPAINT_SECRET_KEY": "a-test-secret-that-is-long-enough",
            }
        )
    return env


_redis_db = iter(range(1, 16))
"""Redis databases for production stacks, one each (database 0 is left alone)."""


def _next_redis_db() -> int:
    return next(_redis_db)
