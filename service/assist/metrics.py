"""Prometheus metrics of annotation assist, beside the service's in `service/metrics.py`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from service.metrics import NAMESPACE

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

SUGGESTIONS = Counter(
    "assist_suggestions_total",
    "Label suggestions served, by source (api, review, labelstudio) and taxonomy.",
    ("source", "taxonomy"),
    namespace=NAMESPACE,
)
DECISIONS = Counter(
    "assist_decisions_total",
    "Labelers' decisions on suggestions; rank is the accepted suggestion's rank, or none.",
    ("decision", "rank", "source"),
    namespace=NAMESPACE,
)
SUGGESTION_CONFIDENCE = Histogram(
    "assist_suggestion_confidence",
    "Confidence of the first suggested label.",
    ("source",),
    namespace=NAMESPACE,
    buckets=CONFIDENCE_BUCKETS,
)
WEBHOOK_EVENTS = Counter(
    "assist_webhook_events_total",
    "Label Studio webhook events by action and outcome (recorded, ignored, invalid).",
    ("action", "outcome"),
    namespace=NAMESPACE,
)


def record_decision(decision: str, rank: int | None, source: str) -> None:
    """Count one decision; rank becomes the label value "none" when absent."""
    DECISIONS.labels(decision=decision, rank=str(rank) if rank is not None else "none", source=source).inc()
