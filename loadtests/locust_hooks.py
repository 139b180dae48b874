"""Locust event hooks shared by every scenario: loopback-only targets and hard stops.

Imported by the user classes, so any locustfile that uses them gets:
- `--host` must be http on 127.0.0.1, localhost or ::1. The check runs at init,
  before any user starts, and a failed check makes Locust exit with status 1;
- the run quits after `--max-requests` requests (successes and failures together);
- the run quits after `--hard-stop-s` seconds, even without `--run-time` or
  with a load shape that never returns None.

Only Locust processes import this module, because Locust patches sockets with gevent.
"""

from __future__ import annotations

import logging

import gevent
from locust import events
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC

from loadtests.targets import validate_loopback_grpc_target, validate_loopback_url

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUESTS = 2000
DEFAULT_HARD_STOP_S = 300.0

# One Locust process runs one test, so module state is per test.
_state: dict[str, object] = {"requests": 0, "quitting": False, "environment": None}


@events.init_command_line_parser.add_listener
def add_options(parser, **_kwargs) -> None:
    parser.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        env_var="LOCUST_MAX_REQUESTS",
        help="Quit after this many requests, failed ones included.",
    )
    parser.add_argument(
        "--hard-stop-s",
        type=float,
        default=DEFAULT_HARD_STOP_S,
        env_var="LOCUST_HARD_STOP_S",
        help="Quit this many seconds after the test starts, even when --run-time or a load shape would run longer.",
    )
    parser.add_argument(
        "--grpc-target",
        type=str,
        default="",
        env_var="LOCUST_GRPC_TARGET",
        help="HOST:PORT of the service's gRPC server, for GrpcClassifyUser (loopback only).",
    )


@events.init.add_listener
def check_targets(environment: Environment, **_kwargs) -> None:
    """Raise TargetError (Locust then exits with status 1) for a non-loopback target."""
    options = environment.parsed_options
    host = environment.host or (options.host if options else None)
    validate_loopback_url(host)
    if options is not None and options.grpc_target:
        validate_loopback_grpc_target(options.grpc_target)
    if options is not None and (options.max_requests < 1 or options.hard_stop_s <= 0):
        raise ValueError(
            f"invalid bounds: --max-requests={options.max_requests}, --hard-stop-s={options.hard_stop_s}; both must be positive"
        )
    _state["environment"] = environment


def _quit(environment: Environment, reason: str) -> None:
    if _state["quitting"] or environment.runner is None:
        return
    _state["quitting"] = True
    logger.info("stopping the test: %s", reason)
    # Quit from a fresh greenlet: runner.quit() kills the user greenlets, and the
    # caller may be one of them.
    gevent.spawn(environment.runner.quit)


@events.test_start.add_listener
def start_hard_stop(environment: Environment, **_kwargs) -> None:
    options = environment.parsed_options
    limit = options.hard_stop_s if options else DEFAULT_HARD_STOP_S
    gevent.spawn_later(limit, _quit, environment, f"hard stop after {limit:g} s")


@events.quitting.add_listener
def let_csv_writer_catch_up(environment: Environment, **_kwargs) -> None:
    # Locust 2.47 rewrites the --csv files once per CSV_STATS_INTERVAL_SEC from a
    # background greenlet and not again at shutdown, so a run that quits between two
    # writes would leave the last requests out of <prefix>_stats.csv. Waiting one
    # interval here, after the users have stopped, lets that greenlet write the
    # final numbers before Locust closes the files.
    options = environment.parsed_options
    if options is not None and options.csv_prefix:
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.25)


@events.request.add_listener
def count_request(**_kwargs) -> None:
    environment = _state["environment"]
    if not isinstance(environment, Environment):
        return
    _state["requests"] = int(_state["requests"]) + 1
    limit = environment.parsed_options.max_requests if environment.parsed_options else DEFAULT_MAX_REQUESTS
    if _state["requests"] >= limit:
        _quit(environment, f"request limit of {limit} reached")
