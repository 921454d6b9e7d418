"""The worker process: a worker that neither recovers nor stops after Celery's unrecoverable error exits."""

from __future__ import annotations

import subprocess
import sys
import time

HUNG_WORKER = """
import threading
from worker.app import exit_on_unrecoverable
from celery.utils.log import worker_logger

exit_on_unrecoverable(grace=1.0)
threading.Thread(target=threading.Event().wait).start()  # a non-daemon thread that never ends: a hang
worker_logger.critical("Unrecoverable error: %r", AttributeError("'NoneType' object has no attribute 'hostname'"))
"""


def test_a_hung_worker_exits_after_an_unrecoverable_error() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", HUNG_WORKER], capture_output=True, text=True, timeout=60)
    assert result.returncode == 70, result.stderr
    assert 1.0 <= time.monotonic() - started < 30


def test_other_critical_records_do_not_end_the_process() -> None:
    code = HUNG_WORKER.replace("Unrecoverable error: %r", "Something else: %r").replace(
        "threading.Thread(target=threading.Event().wait).start()", "import time; time.sleep(3)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
