"""Run the embedded default's processes and keep them running: `python -m admin.supervise`.

./scripts/serve execs this after the install, the migration and the first-run key. By default it
runs the API, the inference worker, the ops worker and beat; `--child NAME=COMMAND` (repeated)
runs other commands instead. The rules:

- each child runs in its own process group, its output in LOGS/NAME.log (emptied when the
  supervisor starts, appended to on each restart);
- a child that exits, with any code or killed by any signal, is started again after a delay:
  1 s, doubled after each run shorter than 60 s, at most 30 s; a run of 60 s or more sets it back
  to 1 s. Each restart is logged to stderr with the child's name, its exit code or signal and the
  delay. The other children keep running;
- start-up: READY_URL is polled every 0.5 s and the banner printed once it answers 2xx. Until then,
  if the essential child (the API) has ended 5 runs in a row, each shorter than 60 s, the
  supervisor says so, stops everything and exits 1;
- SIGINT, SIGTERM or SIGHUP: SIGTERM to every child, up to the grace period (20 s: the inference
  worker's warm shutdown) for them to end, then SIGKILL to the process group of each one left;
  exit 0.

No busy loop: a thread per running child blocks on its exit, a thread polls readiness, and the
main thread sleeps on one queue until an event arrives or a restart falls due.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
READY_POLL_SECONDS = 0.5
READY_NOTE_AFTER_SECONDS = 60.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Child:
    """One supervised process: its name (its log is NAME.log) and its command line."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """When to restart, when to give up and how long to wait for a stop."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    grace: float = 20.0
    max_start_failures: int = 5

    def delay(self, failures: int) -> float:
        """The wait before the next start after `failures` short runs in a row (0 for the first):
        first_delay doubled `failures` times, at most max_delay."""
        return min(self.first_delay * 2.0 ** min(failures, 64), self.max_delay)


@dataclass(frozen=True)
class Exited:
    """A child's run ended: `proc` exited (None: it could not be started; `how` says why)."""

    name: str
    proc: subprocess.Popen[bytes] | None
    how: str = ""


@dataclass(frozen=True)
class Ready:
    """READY_URL answered 2xx."""


@dataclass(frozen=True)
class Stop:
    """The supervisor received `signum`."""

    signum: int


Event = Exited | Ready | Stop


@dataclass
class Slot:
    """A child's state: its current process, when that run began, how many short runs it has had in
    a row, and when its pending restart is due (None: none pending)."""

    child: Child
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    due: float | None = None
    runs: int = 0


def describe_exit(returncode: int) -> str:
    """'exited with code N', or 'was killed by SIGNAME' for a negative return code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def answers(url: str) -> bool:
    """Whether `url` answers 2xx within 2 s; proxies in the environment are not used (loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return 200 <= int(response.status) < 300
    except (OSError, ValueError):  # URLError and HTTPError (503 while not ready) are OSErrors
        return False


def poll_ready(url: str, events: queue.SimpleQueue[Event], stop: threading.Event, say: Callable[[str], None]) -> None:
    """Every 0.5 s until `url` answers (then one Ready event) or `stop` is set; a note after 60 s."""
    began = time.monotonic()
    noted = False
    while not stop.wait(READY_POLL_SECONDS):
        if answers(url):
            events.put(Ready())
            return
        if not noted and time.monotonic() - began > READY_NOTE_AFTER_SECONDS:
            say(f"not ready after {READY_NOTE_AFTER_SECONDS:g} s ({url}); still waiting")
            noted = True


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log, or '' when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Supervisor:
    """Starts the children, restarts each one that ends (see the module's rules) and stops them all
    on a signal. `run()` returns the exit status: 0 after a signal, 1 when the essential child could
    not start."""

    def __init__(
        self,
        children: Sequence[Child],
        logs: Path,
        policy: Policy = Policy(),
        *,
        ready_url: str | None = None,
        banner: str = "",
        essential: str | None = None,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
    ) -> None:
        self.slots = {child.name: Slot(child) for child in children}
        self.logs = logs
        self.policy = policy
        self.ready_url = ready_url
        self.banner = banner
        self.essential = essential
        self.out = out
        self.err = err
        self.ready = False
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.halt = threading.Event()

    def say(self, text: str) -> None:
        self.err.write(f"serve: {time.strftime('%H:%M:%S')} {text}\n")
        self.err.flush()

    def run(self) -> int:
        """Install the signal handlers, start every child and supervise until a signal or a give-up."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            for slot in self.slots.values():
                self._start(slot)
            self._begin_readiness()
            return self._loop()
        finally:
            self.halt.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.events.put(Stop(signum))  # SimpleQueue.put is reentrant: safe in a signal handler

    def _begin_readiness(self) -> None:
        if self.ready_url is None:
            self._announce()
            return
        args = (self.ready_url, self.events, self.halt, self.say)
        threading.Thread(target=poll_ready, args=args, name="ready", daemon=True).start()

    def _announce(self) -> None:
        self.ready = True
        if self.banner:
            self.out.write(self.banner.rstrip("\n") + "\n")
            self.out.flush()

    def _loop(self) -> int:
        """Handle events until a stop or a give-up; start the restarts that fall due in between."""
        while True:
            event = self._next_event()
            if event is None:
                self._start_due()
            elif isinstance(event, Stop):
                self.say(f"{signal.Signals(event.signum).name}: stopping...")
                self._stop()
                return 0
            elif isinstance(event, Ready):
                self._announce()
            elif self._on_exit(event):
                self._stop()
                return 1

    def _next_event(self) -> Event | None:
        """The next event, or None once the earliest pending restart is due (blocks until then)."""
        dues = [slot.due for slot in self.slots.values() if slot.due is not None]
        timeout = None if not dues else max(0.0, min(dues) - time.monotonic())
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots.values():
            if slot.due is not None and slot.due <= now:
                self._start(slot)
                self.say(f"restarted {slot.child.name}" + (f" (pid {slot.proc.pid})" if slot.proc else ""))

    def log_path(self, slot: Slot) -> Path:
        return self.logs / f"{slot.child.name}.log"

    def _start(self, slot: Slot) -> None:
        """Start the child with its output in its log (emptied on its first run), and a thread that
        reports its exit; a command that cannot be started is reported as an exit at once."""
        slot.due = None
        slot.started = time.monotonic()
        slot.runs += 1
        try:
            with open(self.log_path(slot), "ab" if slot.runs > 1 else "wb") as log:
                if slot.runs > 1:
                    log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} serve: run {slot.runs} ---\n".encode())
                    log.flush()
                proc = subprocess.Popen(
                    slot.child.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, process_group=0
                )
        except OSError as exc:
            slot.proc = None
            self.events.put(Exited(slot.child.name, None, f"could not be started ({exc})"))
            return
        slot.proc = proc
        threading.Thread(target=self._watch, args=(slot.child.name, proc), name=slot.child.name, daemon=True).start()

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self.events.put(Exited(name, proc))

    def _on_exit(self, event: Exited) -> bool:
        """Schedule the restart of a child whose run ended (a run of `stable_after` or more resets
        its backoff). True: the essential child ended `max_start_failures` short runs in a row
        before the service was ever ready; the caller gives up."""
        slot = self.slots[event.name]
        if slot.proc is not event.proc or slot.due is not None:
            return False
        uptime = time.monotonic() - slot.started
        if uptime >= self.policy.stable_after:
            slot.failures = 0
        delay = self.policy.delay(slot.failures)
        slot.failures += 1
        slot.proc = None
        how = event.how or describe_exit(event.proc.returncode if event.proc else 0)
        if self._gives_up(slot):
            self.say(f"{event.name} could not start {slot.failures} times in a row ({how}); stopping")
            self.err.write(tail(self.log_path(slot)) + "\n")
            return True
        slot.due = time.monotonic() + delay
        self.say(f"{event.name} {how} after {uptime:.1f} s; restarting in {delay:g} s (log: {self.log_path(slot)})")
        return False

    def _gives_up(self, slot: Slot) -> bool:
        return not self.ready and slot.child.name == self.essential and slot.failures >= self.policy.max_start_failures

    def _stop(self) -> None:
        """SIGTERM to every running child; SIGKILL to the process group of each one still running
        after the grace period. Pending restarts are dropped."""
        self.halt.set()
        for slot in self.slots.values():
            slot.due = None
        running = {slot.proc: slot.child.name for slot in self.slots.values() if slot.proc is not None}
        for proc in running:
            _send(proc.pid, signal.SIGTERM, group=False)
        deadline = time.monotonic() + self.policy.grace
        while running and (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(event, Exited) and event.proc is not None:
                running.pop(event.proc, None)
        for proc, name in running.items():
            self.say(f"{name} did not stop within {self.policy.grace:g} s: SIGKILL")
            _send(proc.pid, signal.SIGKILL, group=True)
            proc.wait()


def _send(pid: int, signum: signal.Signals, *, group: bool) -> None:
    """Signal a child (or its whole process group); one that is already gone is no error."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def service_children(bin_dir: Path) -> list[Child]:
    """The embedded default's four processes, from the virtual environment's `bin_dir`."""
    worker = str(bin_dir / "inpaint-worker")
    return [
        Child("api", (str(bin_dir / "inpaint-api"),)),
        Child("worker", (worker, "run", "--queues", "inpaint")),
        Child(
            "ops-worker", (worker, "run", "--queues", "maintenance,webhooks", "--pool", "threads", "--concurrency", "8")
        ),
        Child("beat", (worker, "beat")),
    ]


DESCRIPTION = "Run the embedded default's processes and restart each one that exits, with backoff."
CHILD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_child(text: str) -> Child:
    """'NAME=COMMAND' -> Child(NAME, COMMAND split as a shell would, without running a shell)."""
    name, sep, command = text.partition("=")
    argv = tuple(shlex.split(command))
    if not sep or not CHILD_NAME.fullmatch(name) or not argv:
        raise ValueError(text)
    return Child(name, argv)


parse_child.__name__ = "NAME=COMMAND"


def build_parser() -> argparse.ArgumentParser:
    default_logs = Path(os.environ.get("INPAINT_DATA_DIR", "data")) / "logs"
    parser = argparse.ArgumentParser(prog="python -m admin.supervise", description=DESCRIPTION)
    parser.add_argument(
        "--child",
        type=parse_child,
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a process to supervise (repeatable); default: the API, the two workers and beat",
    )
    parser.add_argument("--logs", type=Path, default=default_logs, help="where NAME.log goes (default: %(default)s)")
    parser.add_argument("--ready-url", help="polled until it answers 2xx; then the banner is printed")
    parser.add_argument("--banner", default="", help="printed to stdout once ready")
    parser.add_argument("--essential", default="api", help="the child whose failing start-up stops everything")
    parser.add_argument("--grace", type=float, default=Policy.grace, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--first-delay", type=float, default=Policy.first_delay, help="the first restart's delay")
    parser.add_argument("--max-delay", type=float, default=Policy.max_delay, help="the longest restart delay")
    parser.add_argument(
        "--stable-after", type=float, default=Policy.stable_after, help="a run this long resets the delay"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    names = [child.name for child in args.child]
    if len(set(names)) != len(names):
        raise SystemExit("supervise: two children have the same name")
    children = args.child or service_children(Path(sys.executable).parent)
    policy = Policy(args.first_delay, args.max_delay, args.stable_after, args.grace)
    supervisor = Supervisor(
        children, args.logs, policy, ready_url=args.ready_url, banner=args.banner, essential=args.essential
    )
    raise SystemExit(supervisor.run())


if __name__ == "__main__":
    main()
