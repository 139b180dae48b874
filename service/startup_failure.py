"""Stop the whole server when a worker cannot load the model, instead of restarting it forever.

BentoML 1.4.40 runs each worker under a circus arbiter, the `bentoml serve`
process, which respawns a worker that exits during startup. A model that
cannot load fails the same way on every try, so without this the server
loops with "Application startup failed" about once a minute and never
becomes ready. `stop_server` logs the reason once and sends SIGTERM to the
arbiter, so `bentoml serve` exits and a supervisor or the test launcher
detects the failure at once.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

logger = logging.getLogger("mllm_classify.startup")


def _is_bentoml_server(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"bentoml") for part in command) and b"serve" in command


def stop_server(error: BaseException) -> None:
    """Log why the model did not load and send SIGTERM to the `bentoml serve` process of this worker."""
    parent = os.getppid()
    if not _is_bentoml_server(parent):
        logger.critical("the model failed to load: %s", error)
        return

    logger.critical("the model failed to load, stopping the server (pid %d): %s", parent, error)
    os.kill(parent, signal.SIGTERM)
