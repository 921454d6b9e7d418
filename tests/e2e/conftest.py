"""The end-to-end layer: tests that start the service's real processes (API, workers, beat, the
`inpaint*` commands) and talk to them over HTTP or their command line.

Every test collected under tests/e2e is marked `e2e`: `./scripts/test -m "not e2e"` runs the
in-process layer alone, `./scripts/test tests/e2e` this one. The stacks are started once per
session and kind, by the fixtures below.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_REGISTRATION, TINY_SLUG
from tests.support.stack import Stack, stack_env

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so that -m "not e2e" sees the mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory e2e (a conftest's hook sees the whole session's items)."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)


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
            stack.cli("inpaint-admin", "models", "register", TINY_SLUG, str(tiny_model_dir), *TINY_REGISTRATION)
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
