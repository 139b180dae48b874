"""Prometheus metrics of the gRPC API, in the service's `mllm_classify` namespace.

Calls rejected by the gRPC core before a handler runs, such as a message over
the size limit, never reach these series.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from service.metrics import LATENCY_BUCKETS, NAMESPACE

GRPC_REQUESTS = Counter(
    "grpc_requests_total",
    "Handled gRPC calls by method and status code (OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...).",
    ("method", "code"),
    namespace=NAMESPACE,
)
GRPC_REQUEST_LATENCY = Histogram(
    "grpc_request_duration_seconds",
    "Time to handle one gRPC call, from the handler's start to its status; a stream counts once.",
    ("method",),
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
