"""Fixtures every layer shares: the real services, databases, the tiny pipeline and its bench.

The services come from ./scripts/test (INPAINT_TEST_* variables); run alone,
the session starts its own set. The running stacks (real API and worker
processes) are tests/e2e's, in tests/e2e/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import services as svc
from tests.support.browser import SKIP_MARK
from tests.support.services import new_postgres_database
from tests.support.stack import BIN

TINY_SLUG = "tiny-sd-inpaint"
TINY_REGISTRATION = ("--family", "sd15", "--max-side", "128", "--default-size", "64", "--steps", "1:50:2")
"""How every stack registers the tiny pipeline: `inpaint-admin models register TINY_SLUG DIR *TINY_REGISTRATION`."""


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
