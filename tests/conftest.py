"""Shared fixtures: the real services, the tiny pipeline, and running stacks.

The services come from ./scripts/test (INPAINT_TEST_* variables); run alone,
the session starts its own set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import services as svc
from tests.support.browser import SKIP_MARK
from tests.support.stack import BIN, Stack, unique_name

TINY_SLUG = "tiny-sd-inpaint"


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    names = ("INPAINT_TEST_REDIS_URL", "INPAINT_TEST_POSTGRES_URL", "INPAINT_TEST_S3_ENDPOINT")
    if all(os.environ.get(n) for n in names):
        yield {n: os.environ[n] for n in names}
        return
    state = tmp_path_factory.mktemp("services")
    try:
        yield svc.up(state)
    finally:
        svc.down(state)


@pytest.fixture(scope="session")
def postgres_url(services: dict[str, str]) -> str:
    return services["INPAINT_TEST_POSTGRES_URL"]


def new_postgres_database(admin_url: str) -> str:
    import sqlalchemy as sa

    name = unique_name("iq_")
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SD inpainting pipeline, written by the documented CLI command."""
    path = tmp_path_factory.mktemp("tiny") / "tiny-sd"
    subprocess.run(
        [str(BIN / "inpaint-worker"), "tiny-model", str(path)],
        check=True,
        capture_output=True,
        env={**os.environ, "INPAINT_DATA_DIR": str(path.parent / "data")},
        timeout=300,
    )
    assert (path / "model_index.json").is_file()
    return path


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tiny SDXL pipelines, ControlNets, VAE, LoRAs, embeddings, safety checker and depth model."""
    from tests.support.tiny_models import build_tiny_assets

    return build_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))


@pytest.fixture(scope="session")
def bench(tiny_assets: Any, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Runs request bodies in-process through the registry (a SQLite database) and the worker's path."""
    from storage.database.engine import session_scope
    from tests.support.tiny_models import Bench, register_tiny_assets

    bench = Bench(f"sqlite:///{tmp_path_factory.mktemp('bench') / 'bench.db'}")
    with session_scope(bench.sessions) as session:
        register_tiny_assets(session, tiny_assets, sd15_dir=tiny_model_dir)
    yield bench
    bench.close()


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


def _next_redis_db() -> int:
    return next(_redis_db)


@pytest.fixture(scope="session")
def stack_factory(
    services: dict[str, str], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """make(kind) -> a started Stack of that kind, one per kind per session."""
    stacks: dict[str, Stack] = {}

    def make(kind: str) -> Stack:
        if kind not in stacks:
            workdir = tmp_path_factory.mktemp(f"stack-{kind}")
            stack = Stack(name=kind, workdir=workdir, env=stack_env(kind, workdir, services))
            stack.cli("inpaint-admin", "migrate")
            stack.cli(
                "inpaint-admin",
                "models",
                "register",
                TINY_SLUG,
                str(tiny_model_dir),
                "--family",
                "sd15",
                "--max-side",
                "128",
                "--default-size",
                "64",
                "--steps",
                "1:50:2",
            )
            stacks[kind] = stack
            stack.start_all()
        return stacks[kind]

    yield make
    for stack in stacks.values():
        stack.stop_all()
        if os.environ.get("INPAINT_KEEP_TEST_LOGS"):
            dest = Path(os.environ["INPAINT_KEEP_TEST_LOGS"]) / stack.name
            shutil.copytree(stack.workdir, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("data"))


@pytest.fixture(scope="session", params=["embedded", "production"])
def stack(request: pytest.FixtureRequest, stack_factory: Any) -> Stack:
    """Each test that takes `stack` runs against both topologies."""
    return stack_factory(request.param)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def embedded(stack_factory: Any) -> Stack:
    return stack_factory("embedded")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def production(stack_factory: Any) -> Stack:
    return stack_factory("production")  # type: ignore[no-any-return]


def pytest_report_header() -> str:
    return f"python {sys.version.split()[0]} at {sys.executable}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Skipped browser tests are never silent: their reason is repeated as a warning at the end."""
    reasons = {
        str(report.longrepr[2])
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and SKIP_MARK in str(report.longrepr[2])
    }
    for reason in sorted(reasons):
        terminalreporter.write_sep("!", "WARNING", red=True, bold=True)
        terminalreporter.write_line(reason, red=True, bold=True)


@pytest.fixture
def http_server() -> Iterator[Any]:
    from tests.support.http_server import ScriptedServer

    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, services: dict[str, str]
) -> str:
    """A database of each kind, migrated to head by Alembic (never create_all)."""
    from storage.database.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'unit.db'}"
    else:
        url = new_postgres_database(services["INPAINT_TEST_POSTGRES_URL"])
    upgrade(url)
    return url


@pytest.fixture
def db(migrated_url: str) -> Iterator[Any]:
    """A session inside a transaction that is rolled back after the test (SAVEPOINTs inside)."""
    from sqlalchemy.orm import Session

    from storage.database.engine import make_engine

    engine = make_engine(migrated_url)
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            outer.rollback()
    engine.dispose()
