"""Figures and how they are printed: percentiles, tables, the machine, and who used the CPU.

Times are kept in seconds and printed in milliseconds. Percentiles interpolate
linearly between ranks; with n samples, p99 of fewer than 100 is close to the max,
and every table says n.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, linear between ranks; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def p50_p99_ms(values: Sequence[float]) -> tuple[str, str]:
    return ms(percentile(values, 50)), ms(percentile(values, 99))


def format_failures(statuses: Mapping[int, int]) -> str:
    """How many answers were not 2xx, and their codes: '0', or '12 (429: 10, 0: 2)'; 0 is no answer in time,
    -1 a connection lost."""
    failed = {code: n for code, n in sorted(statuses.items()) if not 200 <= code < 300}
    if not failed:
        return "0"
    return f"{sum(failed.values())} (" + ", ".join(f"{code}: {n}" for code, n in failed.items()) + ")"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A Markdown table, so that it can be pasted into docs/performance.md as printed."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text_rows)]) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in text_rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print()


def describe_machine() -> str:
    """One line: date, cores, CPU model, memory, Python, OS and the load other users put on it."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({model}), "
        f"{memory_kb / 2**20:.0f} GiB RAM; Python {sys.version.split()[0]}, "
        f"{platform.system()} {platform.release()}; load average at start {load}"
    )


def print_header(title: str, module: str, argv: Sequence[str] | None) -> None:
    """Title, the command that reproduces the run, and the machine."""
    args = list(argv) if argv is not None else sys.argv[1:]
    print(f"# {title}")
    print(f"command: .venv/bin/python -m {' '.join([module, *args])}")
    print(f"machine: {describe_machine()}")
    print()


# -- CPU accounting -----------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ")" splits cleanly.
    return raw[raw.rindex(")") + 2 :].split()


def _process_cpu() -> dict[int, tuple[int, int, float]]:
    """pid -> (parent pid, session id, CPU seconds) for every process visible.

    A process's CPU includes that of its children that have exited and been waited for, so
    that a PostgreSQL backend that exits during a phase (the pool closes its overflow
    connections) moves into its postmaster's count instead of vanishing from the sum."""
    table: dict[int, tuple[int, int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        # After the name: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12) cutime(13) cstime(14)
        seconds = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), seconds)
    return table


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent not idle since boot (every user, not only us)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds by role between `start()` and `stop()`.

    `roles` maps a role name to the pids it owns; a process belongs to a role when
    its pid, its session or its parent is one of them (the servers we start run in
    sessions of their own; PostgreSQL backends are children of the postmaster).
    `others` is what the rest of the machine (other users included) used meanwhile.
    """

    roles: dict[str, set[int]]
    before: dict[str, float] = field(default_factory=dict)
    busy_before: float = 0.0
    started: float = 0.0

    def _by_role(self) -> dict[str, float]:
        totals = dict.fromkeys(self.roles, 0.0)
        for pid, (ppid, session, seconds) in _process_cpu().items():
            for role, pids in self.roles.items():
                if pid in pids or session in pids or ppid in pids:
                    totals[role] += seconds
                    break
        return totals

    def start(self, now: float) -> None:
        self.before, self.busy_before, self.started = self._by_role(), machine_busy_seconds(), now

    def stop(self, now: float) -> dict[str, float]:
        """Cores used by each role over the interval (1.0 = one core busy all the time)."""
        after, busy = self._by_role(), machine_busy_seconds()
        wall = max(now - self.started, 1e-9)
        used = {role: (after[role] - self.before.get(role, 0.0)) / wall for role in self.roles}
        used["others"] = max(0.0, (busy - self.busy_before) / wall - sum(used.values()))
        return used


def format_cores(used: dict[str, float]) -> str:
    return ", ".join(f"{role} {cores:.2f}" for role, cores in used.items() if cores >= 0.005) or "-"
