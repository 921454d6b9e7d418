"""admin/supervise.py, the supervisor ./scripts/serve execs, run as a real process on stand-in
children (a few lines of Python each): a child that dies is restarted while the others keep their
pid, the delay doubles for one that keeps dying, a signal stops everything within the grace, and an
API that cannot start stops the supervisor."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from admin.supervise import Policy, parse_child

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
STUBBORN = (
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True); "
    "time.sleep(60)"
)


def python(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    logs: Path
    out: Path
    err: Path

    def pids(self, name: str) -> list[int]:
        """The pids the stand-in child `name` wrote to its log, one per run."""
        path = self.logs / f"{name}.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [int(line) for line in lines if line.strip().isdigit()]

    def stderr(self) -> str:
        return self.err.read_text()

    def delays(self, name: str) -> list[float]:
        """The delays of the restarts the supervisor logged for `name`."""
        lines = [line for line in self.stderr().splitlines() if f" {name} " in line and "restarting in" in line]
        return [float(line.split("restarting in ")[1].split(" s")[0]) for line in lines]


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def supervisor(tmp_path: Path, children: dict[str, str], *options: str) -> Iterator[Run]:
    """`python -m admin.supervise` on `children` (name -> command); stopped, children and all, after."""
    argv = [sys.executable, "-m", "admin.supervise", "--logs", str(tmp_path / "logs"), *options]
    for name, command in children.items():
        argv += ["--child", f"{name}={command}"]
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=stdout, stderr=stderr)
    run = Run(proc, tmp_path / "logs", out, err)
    try:
        yield run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        for pid in (pid for name in children for pid in run.pids(name)):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_delay_doubles_from_one_second_to_thirty() -> None:
    assert [Policy().delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert Policy().delay(10_000) == 30


def test_a_child_is_named_and_split_like_a_shell_command() -> None:
    child = parse_child("ops-worker=inpaint-worker run --queues 'maintenance,webhooks'")
    assert (child.name, child.argv) == ("ops-worker", ("inpaint-worker", "run", "--queues", "maintenance,webhooks"))
    for bad in ("no-command=", "=cmd", "just-a-name", "../x=cmd"):
        with pytest.raises(ValueError):
            parse_child(bad)


def test_a_killed_child_is_restarted_and_the_other_keeps_its_pid(tmp_path: Path) -> None:
    children = {"victim": python(SLEEPER), "bystander": python(SLEEPER)}
    with supervisor(tmp_path, children, "--first-delay", "0.2") as run:
        wait_for(lambda: run.pids("victim") and run.pids("bystander"))
        [victim], [bystander] = run.pids("victim"), run.pids("bystander")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(run.pids("victim")) == 2)
        assert run.pids("victim")[1] != victim
        assert run.pids("bystander") == [bystander] and alive(bystander)
        assert "victim was killed by SIGKILL" in run.stderr() and run.delays("victim") == [0.2]
        assert run.proc.poll() is None


def test_the_delay_grows_for_a_child_that_keeps_dying(tmp_path: Path) -> None:
    children = {"crasher": python("raise SystemExit(3)"), "steady": python(SLEEPER)}
    with supervisor(tmp_path, children, "--first-delay", "0.1", "--max-delay", "0.4") as run:
        wait_for(lambda: len(run.delays("crasher")) >= 5)
        assert run.delays("crasher")[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]
        assert "crasher exited with code 3" in run.stderr()
        assert len(run.pids("steady")) == 1


def test_a_run_longer_than_stable_after_resets_the_delay(tmp_path: Path) -> None:
    children = {"flaky": python("import time; time.sleep(0.4); raise SystemExit(1)")}
    with supervisor(tmp_path, children, "--first-delay", "0.1", "--stable-after", "0.3") as run:
        wait_for(lambda: len(run.delays("flaky")) >= 3)
        assert run.delays("flaky")[:3] == [0.1, 0.1, 0.1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_child_within_the_grace(tmp_path: Path, signum: signal.Signals) -> None:
    """SIGTERM to each child; one that ignores it is killed when the grace (1 s here) is over."""
    children = {"polite": python(SLEEPER), "stubborn": python(STUBBORN)}
    with supervisor(tmp_path, children, "--grace", "1") as run:
        wait_for(lambda: run.pids("polite") and run.pids("stubborn"))
        pids = run.pids("polite") + run.pids("stubborn")
        began = time.monotonic()
        run.proc.send_signal(signum)
        assert run.proc.wait(timeout=10) == 0
        assert time.monotonic() - began < 3
        assert not any(alive(pid) for pid in pids)
        assert "stubborn did not stop within 1 s: SIGKILL" in run.stderr()
        assert "polite did not stop" not in run.stderr()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_banner_is_printed_once_the_api_is_ready(tmp_path: Path) -> None:
    port = free_port()
    api = shlex.join([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"])
    options = ("--ready-url", f"http://127.0.0.1:{port}/", "--banner", "Inpaint Queue is running")
    with supervisor(tmp_path, {"api": api}, *options) as run:
        wait_for(lambda: "Inpaint Queue is running" in run.out.read_text())


@pytest.mark.parametrize("api", [python("raise SystemExit(1)"), "/nonexistent/inpaint-api"], ids=["exits", "missing"])
def test_an_api_that_cannot_start_five_times_stops_everything(tmp_path: Path, api: str) -> None:
    children = {"api": api, "worker": python(SLEEPER)}
    options = ("--ready-url", f"http://127.0.0.1:{free_port()}/readyz", "--first-delay", "0.05", "--max-delay", "0.1")
    with supervisor(tmp_path, children, *options) as run:
        wait_for(lambda: run.pids("worker"))
        assert run.proc.wait(timeout=20) == 1
        assert "api could not start 5 times in a row" in run.stderr()
        assert len(run.delays("api")) == 4
        assert not alive(run.pids("worker")[0])
        assert run.out.read_text() == ""
