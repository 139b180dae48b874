"""Locust scenarios for steady load and a protocol mix (bursts live in `burst.py`).

Pick the scenario by user class; without one, every class below runs together:

    locust -f loadtests/locustfile.py --headless -u 4 -r 2 -t 30s \
        --host http://127.0.0.1:3000 --max-requests 500 \
        --csv var/locust/steady --html var/locust/steady.html SteadyUser

`--host` must be a loopback http URL, and every run stops after `--max-requests`
requests or `--hard-stop-s` seconds even without `-t` (see `locust_hooks`).
`GrpcClassifyUser` is added when the gRPC client is installed; it needs
`--grpc-target 127.0.0.1:PORT`.
"""

from __future__ import annotations

from loadtests.locust_grpc import GrpcClassifyUser  # noqa: F401  (None when gRPC is unavailable)
from loadtests.locust_users import ProtocolMixUser, SteadyUser  # noqa: F401

if GrpcClassifyUser is None:
    del GrpcClassifyUser
