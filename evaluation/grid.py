"""Evaluation settings and the grid file that lists them.

A setting fixes everything that can change a result: the protocol, how
multiple-choice options are drawn, how answers are mapped to classes, the
text encoder, the batch size and the image order. Its `key` names the rows it
produced in the results file, so it must stay stable across releases.

A grid YAML file has a `base` setting and `vary`, a map from field to values.
Each field is varied alone from the base (one axis at a time), which is how a
protocol audit isolates one effect; `product: true` crosses all axes instead.
`settings` may list extra settings explicitly.

    base: {protocol: open, batch_size: 8}
    vary:
      protocol: [open, choice]
      batch_size: [1, 8, 32]
      order_seed: [1, 2, 3]
"""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.schemas import Protocol

Distractors = Literal["service", "random", "nearest", "confusion"]
AnswerMapping = Literal["service", "exact", "embedding"]

# Protocols whose answer is free text, so it can be re-mapped offline.
REMAPPABLE_PROTOCOLS = ("open", "closed", "multilabel")


class Setting(BaseModel):
    """One point of the evaluation grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Protocol = "open"
    # choice: "service" lets the service pick options from the model's free answer
    # (two-stage); the others put the true class among distractors drawn by the mapper.
    distractors: Distractors = "service"
    num_options: int = Field(5, ge=2, le=26)
    # closed: show this many classes (the true class and its nearest classes) instead of the whole taxonomy.
    closed_candidates: int | None = Field(None, ge=2)
    # "service" keeps the service's own mapping. "exact" and "embedding" re-map the
    # raw answer offline, by exact string match on class names and synonyms or by
    # the embedding mapper with `encoder`.
    mapping: AnswerMapping = "service"
    encoder: str | None = None
    batch_size: int = Field(8, ge=1, le=256)
    # None keeps the dataset order; an integer shuffles it with that seed.
    order_seed: int | None = None
    top_k: int = Field(5, ge=1)
    seed: int = 0
    max_new_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_combinations(self) -> Setting:
        if self.distractors != "service" and self.protocol != "choice":
            raise ValueError(f"distractors={self.distractors} only applies to the choice protocol, not {self.protocol}")
        if self.closed_candidates is not None and self.protocol != "closed":
            raise ValueError("closed_candidates only applies to the closed protocol")
        if self.mapping != "service" and self.protocol not in REMAPPABLE_PROTOCOLS:
            raise ValueError(
                f"mapping={self.mapping} re-maps free-text answers; protocol {self.protocol} has none "
                f"(use one of {', '.join(REMAPPABLE_PROTOCOLS)})"
            )
        if self.encoder is not None and self.mapping != "embedding":
            raise ValueError("encoder only applies to mapping=embedding")
        return self

    @property
    def key(self) -> str:
        """Return a stable name listing the fields that differ from the defaults."""
        defaults = Setting()
        parts = [f"protocol={self.protocol}"]
        for name in Setting.model_fields:
            if name == "protocol":
                continue
            value = getattr(self, name)
            if value != getattr(defaults, name):
                parts.append(f"{name}={value}")
        return ",".join(parts)

    def generation_fields(self) -> dict[str, Any]:
        """Return the fields that change what the model is asked (not how answers are mapped)."""
        return self.model_dump(exclude={"mapping", "encoder"})

    def generation_key(self) -> str:
        """Return the key of the model run this setting's answers come from."""
        return Setting(**self.generation_fields()).key

    def replicate_key(self) -> str:
        """Return the key shared by settings that differ only in batch size or image order.

        Such settings should give the same answers; their agreement measures
        how much batching and order change the model's output.
        """
        return Setting(**self.model_dump(exclude={"batch_size", "order_seed"})).key

    def label(self) -> str:
        """Return a short human-readable name for tables and plots."""
        key = self.key
        return key.removeprefix("protocol=")


class Grid(BaseModel):
    """A base setting varied along axes, plus explicit extra settings."""

    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(default_factory=dict)
    vary: dict[str, list[Any]] = Field(default_factory=dict)
    product: bool = False
    settings: list[dict[str, Any]] = Field(default_factory=list)

    def expand(self) -> list[Setting]:
        """Return the distinct settings of the grid in a stable order (base first)."""
        candidates: list[dict[str, Any]] = [dict(self.base)]
        if self.product and self.vary:
            names = list(self.vary)
            for values in itertools.product(*(self.vary[name] for name in names)):
                candidates.append({**self.base, **dict(zip(names, values, strict=True))})
        else:
            for name, values in self.vary.items():
                for value in values:
                    candidates.append({**self.base, name: value})
        candidates.extend({**self.base, **extra} for extra in self.settings)

        settings: dict[str, Setting] = {}
        for fields in candidates:
            fields = _fill_dependent_fields(fields)
            try:
                setting = Setting(**fields)
            except ValidationError as error:
                raise GridError(f"invalid setting {fields}: {error}") from error
            settings.setdefault(setting.key, setting)
        return list(settings.values())


def _fill_dependent_fields(fields: dict[str, Any]) -> dict[str, Any]:
    # Varying `distractors`, `encoder` or `closed_candidates` alone from the base
    # implies the protocol or mapping they need, so a grid can list
    # `distractors: [random, nearest]` under an open-protocol base.
    fields = dict(fields)
    if fields.get("distractors", "service") != "service":
        fields["protocol"] = "choice"
    if fields.get("encoder") is not None:
        fields["mapping"] = "embedding"
    if fields.get("closed_candidates") is not None:
        fields["protocol"] = "closed"
    # Choice answers are option letters, so a base that re-maps free text
    # falls back to the service's mapping for them.
    if fields.get("protocol", "open") not in REMAPPABLE_PROTOCOLS:
        fields.pop("mapping", None)
        fields.pop("encoder", None)
    return fields


class GridError(ValueError):
    """Raised for an unreadable or invalid grid file."""


def bundled_grid_path(name: str) -> Path:
    """Return the path of a grid shipped in the package (`audit`, `supervised`, `quick`)."""
    return Path(str(resources.files("evaluation").joinpath(f"data/grid-{name}.yaml")))


def load_grid(path: str | Path) -> Grid:
    """Read a grid YAML file, or a bundled grid by name when no such file exists."""
    path = Path(path)
    if not path.exists() and bundled_grid_path(str(path)).exists():
        path = bundled_grid_path(str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise GridError(f"cannot read grid file {path}: {error}") from error
    try:
        return Grid.model_validate(data)
    except ValidationError as error:
        raise GridError(f"invalid grid file {path}: {error}") from error

