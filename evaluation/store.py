"""Append-only JSONL store of evaluation results: one row per image and setting.

Rows are written as each batch finishes and flushed, so an interrupted run
loses at most the batch in flight. On reopening, a partly written last line is
cut off and the (setting, image) pairs already present are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

RowStatus = Literal["ok", "dropped", "error"]


class ResultRow(BaseModel):
    """One image classified under one setting."""

    setting: str
    image_id: str
    # The model that produced the row, so results of several models can be scored together.
    model: str = ""
    # Correct class ids; empty means the image has no valid label and is dropped.
    labels: list[str]
    label: str | None = None
    status: RowStatus = "ok"
    error: str | None = None

    raw_answer: str = ""
    # Top-1 class id, None when the answer maps to no class (out of list or abstention).
    prediction: str | None = None
    predictions: list[str] = Field(default_factory=list)
    prediction_name: str | None = None
    method: str = "none"
    similarity: float = 0.0
    margin: float = 0.0
    out_of_list: bool = False
    abstain: bool = False
    ambiguous: bool = False
    # multilabel protocol: top-1 class id of each listed object, None where it maps to nothing.
    objects: list[str | None] | None = None
    # choice protocol: class ids of the options shown, in order.
    options: list[str] | None = None

    # Per-image stage timings from the service (milliseconds).
    timings: dict[str, float] = Field(default_factory=dict)
    # Wall time of the whole batch this image was part of, and its size.
    batch_ms: float = 0.0
    batch_size: int = 1
    # Position of the image in this setting's run order.
    order_index: int = 0


def read_rows(path: str | Path) -> Iterator[ResultRow]:
    """Stream rows from a results file, skipping a partly written last line."""
    path = Path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                logger.warning("%s line %d is incomplete (interrupted write); skipping it", path, line_number)
                return
            if line.strip():
                yield ResultRow.model_validate_json(line)


class ResultStore:
    """Appends rows to a JSONL file and remembers which (model, setting, image) rows are done."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_partial_line()
        # Keyed by model too, so a second model run into the same file is not skipped.
        self._done: set[tuple[str, str, str]] = {
            (row.model, row.setting, row.image_id) for row in read_rows(self.path)
        }
        self._handle = self.path.open("a", encoding="utf-8")

    def _truncate_partial_line(self) -> None:
        # A run killed mid-write leaves a line without its newline; appending to it
        # would merge two rows into one invalid line.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            keep = handle.read().rfind(b"\n") + 1
            handle.truncate(keep)
        logger.warning("cut an incomplete last line from %s", self.path)

    def __len__(self) -> int:
        return len(self._done)

    def is_done(self, setting: str, image_id: str, model: str = "") -> bool:
        return (model, setting, image_id) in self._done

    def append(self, rows: Iterable[ResultRow]) -> None:
        """Write rows and flush them to disk."""
        for row in rows:
            self._handle.write(json.dumps(row.model_dump(mode="json"), separators=(",", ":")) + "\n")
            self._done.add((row.model, row.setting, row.image_id))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
