"""What device a worker runs on and how much memory it has, for heartbeats and the cache budget.

torch is consulted only once something has imported it (a diffusers model was
loaded); before that a worker reports its configured device and host memory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

BUDGET_FRACTION = 0.75


@dataclass(frozen=True)
class DeviceMemory:
    description: str
    total: int | None
    free: int | None


def host_memory() -> tuple[int | None, int | None]:
    """(total, available) bytes of RAM, from sysconf and /proc/meminfo (Linux)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    free = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return total, free


def device_memory(setting: str) -> DeviceMemory:
    """The worker's device and its memory. CUDA figures need torch to be loaded already."""
    if "torch" in sys.modules and setting != "cpu":
        import torch  # already loaded (checked above): this import loads nothing

        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            free, total = torch.cuda.mem_get_info(index)
            return DeviceMemory(f"cuda:{index} ({torch.cuda.get_device_name(index)})", total, free)
    total, free = host_memory()
    if setting == "cpu" or "torch" in sys.modules:
        return DeviceMemory("cpu", total, free)
    return DeviceMemory(f"{setting} (no model loaded yet)", total, free)


def memory_budget(setting: str, budget_gb: float | None) -> int | None:
    """Bytes resident models may take: configured, else BUDGET_FRACTION of the device's memory."""
    if budget_gb is not None:
        return int(budget_gb * 1024**3)
    total = device_memory(setting).total
    return int(total * BUDGET_FRACTION) if total else None
