"""Checks that keep every load generator in this package on the local machine.

Load tests here only ever drive a service started on this machine, so a base URL
must use http and name a loopback host. Both the Locust scenarios and the sweep
call `validate_loopback_url` before they send anything.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class TargetError(ValueError):
    """Raised for a load-test target that is not a loopback http URL."""


def validate_loopback_url(url: str | None) -> str:
    """Return `url` without a trailing slash, or raise TargetError unless it is http://<loopback>:<port>."""
    if not url:
        raise TargetError("missing target URL: pass --host http://127.0.0.1:PORT")

    parts = urlsplit(url)
    if parts.scheme != "http":
        raise TargetError(f"invalid target URL {url!r}: the scheme must be http")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise TargetError(
            f"invalid target URL {url!r}: load tests only target 127.0.0.1, localhost or ::1, "
            f"got host {parts.hostname!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise TargetError(f"invalid target URL {url!r}: give only scheme, host and port")

    return url.rstrip("/")


def validate_loopback_grpc_target(target: str) -> str:
    """Return `target` (host:port) or raise TargetError unless its host is loopback."""
    host, separator, port = target.rpartition(":")
    host = host.strip("[]")
    if not separator or not port.isdigit():
        raise TargetError(f"invalid gRPC target {target!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    if host not in LOOPBACK_HOSTS:
        raise TargetError(
            f"invalid gRPC target {target!r}: load tests only target 127.0.0.1, localhost or ::1, got host {host!r}"
        )
    return target
