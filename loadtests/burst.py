"""Locust scenario: bursts of back-to-back requests on top of a low base load.

    locust -f loadtests/burst.py --headless -u 8 -t 60s --host http://127.0.0.1:3000 \
        --csv var/locust/burst --html var/locust/burst.html

The shape reads the common options: `-u` is the peak user count and `-t` the
total run time (default 60 s). Each cycle runs one user for `BASE_S` seconds,
then `-u` users for `BURST_S` seconds, with users spawned all at once so the
batcher sees the queue jump.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtests.locust_users import BurstUser  # noqa: F401  (the user class this scenario runs)

BASE_USERS = 1
BASE_S = 8.0
BURST_S = 6.0
DEFAULT_RUN_TIME_S = 60.0


class BurstShape(LoadTestShape):
    """Alternate BASE_USERS for BASE_S seconds and the peak (-u) for BURST_S seconds until -t runs out."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        peak = max(BASE_USERS + 1, options.num_users or 0) if options else 8
        run_time = float(options.run_time) if options and options.run_time else DEFAULT_RUN_TIME_S

        elapsed = self.get_run_time()
        if elapsed >= run_time:
            return None

        in_burst = elapsed % (BASE_S + BURST_S) >= BASE_S
        users = peak if in_burst else BASE_USERS
        # Spawning and stopping all users within one second makes each edge a step.
        return users, float(peak)
