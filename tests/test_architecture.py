"""The house's shape, computed from the code: no import circle, rooms of a readable size, function-local
imports only where they defer a heavy dependency (and say so), and an ops worker that loads no engine."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PACKAGES = ["api", "worker", "storage", "admin", "benchmarks", "migrations", "client/inpaint_client", "tests"]
RUNTIME = ["api", "worker", "storage", "admin"]
MAX_MODULES = 16
"""Modules (besides __init__) one package directory may hold."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "client":
        parts = parts[1:]
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def project_modules() -> dict[str, Path]:
    return {module_name(f): f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join([*anchor, *([base] if base else [])])
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports, at any depth of the file (function-local and
    TYPE_CHECKING imports included: a circle through them is still a circle)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported_names(node, name, path.name == "__init__.py"):
                    if target in modules and target != name:
                        graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere_in_the_project() -> None:
    graph = import_graph()
    assert len(graph) > 100 and graph["worker.jobs.runner"], "the graph was not read"
    assert circles(graph) == []


def test_no_package_holds_more_than_about_fifteen_modules() -> None:
    for pkg in PACKAGES:
        for directory in [ROOT / pkg, *(d for d in (ROOT / pkg).rglob("*") if d.is_dir())]:
            modules = [f for f in directory.glob("*.py") if f.name != "__init__.py"]
            assert len(modules) <= MAX_MODULES, f"{directory.relative_to(ROOT)} holds {len(modules)} modules"


def local_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
            if not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                yield node


def explained(lines: list[str], node: ast.Import | ast.ImportFrom) -> bool:
    """A comment on the import, on a neighbouring import of the same run, or on the line above the run."""
    first = node.lineno - 1
    while first > 0 and lines[first - 1].lstrip().startswith(("import ", "from ", "#")):
        if lines[first - 1].lstrip().startswith("#"):
            return True
        first -= 1
    last = node.end_lineno or node.lineno
    while last < len(lines) and lines[last].lstrip().startswith(("import ", "from ")):
        last += 1
    return any("#" in line for line in lines[first:last])


def test_function_local_imports_say_why() -> None:
    """Allowed only to defer a heavy dependency (torch, diffusers, peft, boto3, the engine), with a
    comment saying so; never to dodge a circle (TYPE_CHECKING blocks are for annotations)."""
    unexplained = []
    for pkg in RUNTIME:
        for path in (ROOT / pkg).rglob("*.py"):
            lines = path.read_text().splitlines()
            tree = ast.parse(path.read_text())
            type_only = {
                id(n)
                for block in ast.walk(tree)
                if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                for n in ast.walk(block)
            }
            for node in local_imports(tree):
                if id(node) not in type_only and not explained(lines, node):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unexplained == []


def shared_objects(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


ENGINE_LIBRARIES = {"torch": "libtorch", "cv2": "/cv2/", "numpy": "/numpy/"}


@contextmanager
def running_worker(tmp_path: Path, queues: str) -> Iterator[subprocess.Popen[bytes]]:
    """`inpaint-worker run --queues QUEUES` on the embedded default, until Celery says it is ready."""
    env = {**os.environ, "INPAINT_DATA_DIR": str(tmp_path), "INPAINT_LOG_FORMAT": "text", "OMP_NUM_THREADS": "1"}
    subprocess.run([str(BIN / "inpaint-admin"), "migrate"], env=env, check=True, capture_output=True, timeout=120)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "inpaint-worker"), "run", "--queues", queues, "--pool", "threads"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker did not get ready:\n" + log.read_text()
            time.sleep(0.2)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.e2e  # real inpaint-worker processes
@pytest.mark.parametrize(("queues", "loaded"), [("maintenance,webhooks", set()), ("inpaint", {"cv2", "numpy"})])
def test_an_ops_worker_loads_no_engine(tmp_path: Path, queues: str, loaded: set[str]) -> None:
    """The ops worker's process maps no torch, cv2 or numpy library; the inference worker, which
    imports the job loop, maps cv2 and numpy (the check can see them) and no torch until a
    diffusers model is loaded."""
    with running_worker(tmp_path, queues) as proc:
        maps = shared_objects(proc.pid)
        assert {name for name, marker in ENGINE_LIBRARIES.items() if marker in maps} == loaded
