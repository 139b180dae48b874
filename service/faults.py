"""Test-only fault injection for model batches, configured in the `faults` section.

Every setting is off by default. The reliability tests and the soak script use
them to make the backend fail for exactly one batch, or to hold requests in
flight, against the real service process:

- `fail_batches: N` makes the first N batches raise.
- `fail_batch_file: PATH` arms one failure each time PATH exists when a batch
  starts. The batch deletes the file, so a test that creates it and sends
  requests can rely on only the next batch failing.
- `batch_delay_s: S` sleeps S seconds before each batch runs the model.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

from service.config import FaultsConfig

logger = logging.getLogger("mllm_classify.faults")


class InjectedFault(RuntimeError):
    """Raised in place of a model batch by the fault injector."""


class FaultInjector:
    """Apply the configured faults at the start of each model batch."""

    def __init__(self, config: FaultsConfig) -> None:
        self.config = config
        self._remaining_failures = config.fail_batches
        self._lock = threading.Lock()
        self.injected = 0
        if self.active:
            logger.warning(
                "fault injection is on (fail_batches=%d, fail_batch_file=%r, batch_delay_s=%g); test use only",
                config.fail_batches,
                config.fail_batch_file,
                config.batch_delay_s,
            )

    @property
    def active(self) -> bool:
        return bool(self.config.fail_batches or self.config.fail_batch_file or self.config.batch_delay_s)

    def before_batch(self, request_ids: Sequence[str]) -> None:
        """Sleep or raise InjectedFault as configured; called by the batch API before the model runs."""
        if not self.active:
            return

        if self.config.batch_delay_s:
            time.sleep(self.config.batch_delay_s)

        if self._take_failure():
            self.injected += 1
            raise InjectedFault(f"injected fault #{self.injected} for the batch of requests {list(request_ids)}")

    def _take_failure(self) -> bool:
        with self._lock:
            if self._remaining_failures > 0:
                self._remaining_failures -= 1
                return True

            path = self.config.fail_batch_file
            if not path:
                return False
            # Deleting the file is the claim: of two workers that see it, only one
            # succeeds, so one file fails one batch.
            try:
                os.remove(path)
            except FileNotFoundError:
                return False
            return True
