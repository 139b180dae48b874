"""Read the Prometheus text exposition of the service's /metrics.

The sweep scrapes /metrics before and after each load level and subtracts the
two snapshots, so batch sizes and queue waits describe that level alone. The
dashboard test uses `exported_sample_names` to check its PromQL against what a
live service exports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class HistogramSnapshot:
    """One histogram summed over the label sets that matched, with cumulative bucket counts."""

    # (upper bound, cumulative count) pairs sorted by bound; the last bound is +Inf.
    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def minus(self, earlier: HistogramSnapshot) -> HistogramSnapshot:
        """Return the observations made between `earlier` and this snapshot."""
        earlier_counts = dict(earlier.buckets)
        buckets = tuple((bound, count - earlier_counts.get(bound, 0.0)) for bound, count in self.buckets)
        return HistogramSnapshot(buckets=buckets, sum=self.sum - earlier.sum, count=self.count - earlier.count)

    def mean(self) -> float:
        """Return the mean observation, or NaN when there is none."""
        return self.sum / self.count if self.count > 0 else math.nan

    def quantile(self, q: float) -> float:
        """Estimate the q-quantile as Prometheus's histogram_quantile does.

        The estimate interpolates linearly inside the bucket holding the rank, takes
        0 as the lower bound of the first bucket (when its bound is positive) and
        returns the largest finite bound when the rank falls in the +Inf bucket.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"invalid quantile {q}: expected a value in [0, 1]")
        if self.count <= 0 or not self.buckets:
            return math.nan

        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower_bound
                if cumulative == lower_count:
                    return bound
                if lower_bound > bound:
                    lower_bound = bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
            lower_bound, lower_count = bound, cumulative
        return lower_bound

    def distribution(self) -> dict[float, float]:
        """Return the observations per bucket (not cumulative), keyed by the bucket's upper bound."""
        counts: dict[float, float] = {}
        previous = 0.0
        for bound, cumulative in self.buckets:
            counts[bound] = cumulative - previous
            previous = cumulative
        return counts


def _labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def read_histogram(text: str, name: str, selector: Mapping[str, str] | None = None) -> HistogramSnapshot:
    """Sum the histogram family `name` over every label set that matches `selector`.

    A family missing from `text` gives an empty snapshot, because the service only
    exports a labelled histogram after its first observation.
    """
    selector = selector or {}
    cumulative: dict[float, float] = {}
    total_sum = 0.0
    total_count = 0.0

    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if not _labels_match(sample.labels, selector):
                continue
            if sample.name == name + "_bucket":
                bound = float(sample.labels["le"])
                cumulative[bound] = cumulative.get(bound, 0.0) + sample.value
            elif sample.name == name + "_sum":
                total_sum += sample.value
            elif sample.name == name + "_count":
                total_count += sample.value

    buckets = tuple(sorted(cumulative.items()))
    return HistogramSnapshot(buckets=buckets, sum=total_sum, count=total_count)


def read_counter(text: str, name: str, selector: Mapping[str, str] | None = None) -> float:
    """Sum the counter `name` (with or without its `_total` suffix) over matching label sets."""
    selector = selector or {}
    family_name = name.removesuffix("_total")
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != family_name:
            continue
        for sample in family.samples:
            if sample.name == family_name + "_total" and _labels_match(sample.labels, selector):
                total += sample.value
    return total


def exported_sample_names(text: str) -> dict[str, str]:
    """Map every sample name in `text` (with `_bucket`, `_total`... suffixes) to its family's type."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names[sample.name] = family.type
    return names
