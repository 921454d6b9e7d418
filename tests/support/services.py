"""Real Redis, PostgreSQL and an S3-compatible server (moto), on loopback, for the tests.

`./scripts/test` starts one set with `python -m tests.support.services up` and
stops it with `down`; the tests find them through the INPAINT_TEST_* variables.
Chaos tests start private instances with the same classes, to restart them.

PostgreSQL refuses to run as root, so as root the servers run as the `postgres`
user, in directories that user owns.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import sqlalchemy

RUN_AS = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_service_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


def _owned_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(path, RUN_AS, RUN_AS)
    return path


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir or _owned_dir("iq-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
        ]
        self.proc = subprocess.Popen(
            _as_service_user(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PostgresServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = _owned_dir("iq-pg-")
        self.bindir = (
            Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
            if glob.glob("/usr/lib/postgresql/*/bin")
            else Path(shutil.which("initdb") or "initdb").parent
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        subprocess.run(
            _as_service_user([str(self.bindir / argv[0]), *argv[1:]]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
        )

    def start(self) -> PostgresServer:
        data = self.workdir / "data"
        if not data.exists():
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(data), "-l", str(self.workdir / "log"), "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        data = self.workdir / "data"
        if data.exists():
            subprocess.run(
                _as_service_user([str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)


class MotoServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        binary = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def up(state: Path) -> dict[str, str]:
    """Start one of each; remember how to stop them in `state`; return the variables for the tests."""
    redis, postgres, moto = RedisServer().start(), PostgresServer().start(), MotoServer().start()
    record = {
        "redis_pid": redis.proc.pid if redis.proc else 0,
        "redis_dir": str(redis.workdir),
        "pg_bindir": str(postgres.bindir),
        "pg_dir": str(postgres.workdir),
        "moto_pid": moto.proc.pid if moto.proc else 0,
    }
    (state / "services.json").write_text(json.dumps(record))
    return {
        "INPAINT_TEST_REDIS_URL": redis.url,
        "INPAINT_TEST_POSTGRES_URL": postgres.url(),
        "INPAINT_TEST_S3_ENDPOINT": moto.url,
    }


def down(state: Path) -> None:
    path = state / "services.json"
    if not path.exists():
        return
    record = json.loads(path.read_text())
    for key in ("redis_pid", "moto_pid"):
        try:
            os.killpg(int(record[key]), signal.SIGTERM)
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    data = Path(record["pg_dir"]) / "data"
    subprocess.run(
        _as_service_user([str(Path(record["pg_bindir"]) / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for key in ("redis_dir", "pg_dir"):
        shutil.rmtree(record[key], ignore_errors=True)
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description="start or stop the test services")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args()
    if args.action == "up":
        for name, value in up(args.state).items():
            print(f"export {name}={value}")
    else:
        down(args.state)


if __name__ == "__main__":
    main()


def new_postgres_database(admin_url: str) -> str:
    name = unique_name("iq_")
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
