"""A running Inpaint Queue, as real processes: the same entry points docker-compose runs.

A Stack is either "embedded" (SQLite, local images, SQLite broker: what
./scripts/serve runs) or "production" (PostgreSQL, Redis, S3 via moto).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port

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

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
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

    def stop_all(self) -> None:
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

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"the API did not become ready:\n{self.log('api')[-3000:]}")

    # -- HTTP --------------------------------------------------------------
    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"x-api-key": key if key is not None else self.user_key}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def submit(self, model: str, body: dict[str, Any], key: str | None = None) -> str:
        with self.client(key) as client:
            response = client.post(f"/v2/{model}", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["request_id"])

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


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
