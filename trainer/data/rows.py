"""The shapes every dataset layer agrees on: the event frame, the load report, and the
snapshot row of each replayed topic, derived from the topic's ``schemas/`` model.

This module sits at the bottom of ``trainer/data/`` (it imports nothing else from it):
``readers`` (file formats), ``snapshot`` (the replayed Parquet) and ``sources`` (which picks
one of them) all build on it, so the dependency goes one way.

Snapshot rows (``row_layout`` / ``flatten``) follow the model of ``schemas.topics.RECORDS``:
every scalar field is a column of the same name (``ts`` is called ``timestamp``, the event
frame's name; numbers and times are float64, times as epoch seconds; enums their value),
the scalar fields of a nested model (an event's ``context``) are columns too, and free-form
fields (``attributes``, lists) are not columns. A field added to a model is therefore a
column of the next replay; parts written before it read it as null.

>>> [c for c, _ in row_layout("catalog").columns][:4]
['item_id', 'title', 'text', 'category']
>>> from schemas.events import parse_event
>>> row = flatten("interactions", parse_event({"event_id": "e1", "type": "view", "user_id": "u", "item_id": "i", "ts": 5}))
>>> (row["user_id"], row["timestamp"], row["type"], row["strategy"])
('u', 5.0, 'view', None)
"""
from __future__ import annotations

import logging
import typing
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import lru_cache
from types import UnionType
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from schemas import topics

log = logging.getLogger(__name__)

#: the event frame every dataset is built from
COLUMNS = ["user_id", "item_id", "timestamp", "type", "value"]
#: optional columns kept when a source has them (basket lines and the buyer's segment, for
#: the basket artefacts of a run)
EXTRA = ["basket_id", "profession", "segment"]
#: the frame's names for model fields that are called otherwise on the wire
RENAME = {"ts": "timestamp"}
#: where a snapshot row came from in the log
BOOKKEEPING = [("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64())]


@dataclass
class LoadReport:
    """What a reader kept and what it dropped, and why."""

    source: str
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def describe(self) -> str:
        lost = ", ".join(f"{n} {why}" for why, n in self.dropped.items())
        return f"{self.source}: {self.rows} events" + (f" ({lost} dropped)" if lost else "")


@dataclass
class Source:
    """Events plus whatever metadata came with them."""

    events: pd.DataFrame
    report: LoadReport
    item_meta: pd.DataFrame | None = None  # index item_id; title, text, category
    user_meta: pd.DataFrame | None = None  # index user_id; segment, ...
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # snapshot offsets, when from one
    restarted: list[str] = field(default_factory=list)  # topics whose log restarted at the last replay
    positions: pd.DataFrame | None = None  # from a snapshot: topic, partition, offset of each event row


# --- snapshot rows from the models ------------------------------------------------------------------
@dataclass(frozen=True)
class RowLayout:
    """The columns of one topic's snapshot rows and where each comes from in the record."""

    topic: str
    columns: tuple[tuple[str, pa.DataType], ...]
    paths: tuple[tuple[str, ...], ...]  # attribute path in the model per column

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns) + BOOKKEEPING)


def _arrow(annotation: Any) -> pa.DataType | type[BaseModel] | None:
    """The column type of a field (a model class for a nested model; None: not a column)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        return _arrow(args[0]) if len(args) == 1 else None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return annotation
        if issubclass(annotation, bool):
            return pa.bool_()
        if issubclass(annotation, (int, float, datetime)):
            return pa.float64()  # nullable numbers are floats in pandas; times are epoch seconds
        if issubclass(annotation, (str, Enum)):
            return pa.string()
    return None  # dicts, lists, Any: free-form, not a column


@lru_cache(maxsize=None)
def row_layout(topic: str) -> RowLayout:
    """The snapshot row layout of ``topic`` (an unprefixed name of ``schemas.topics.RECORDS``)."""
    model = topics.RECORDS[topic]
    top = set(model.model_fields)
    cols: list[tuple[str, pa.DataType]] = []
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        kind = _arrow(info.annotation)
        if isinstance(kind, type):  # a nested model: its scalar fields, prefixed only on a clash
            for sub, sub_info in kind.model_fields.items():
                sub_kind = _arrow(sub_info.annotation)
                if isinstance(sub_kind, pa.DataType):
                    cols.append((f"{name}_{sub}" if sub in top else sub, sub_kind))
                    paths.append((name, sub))
        elif kind is not None:
            cols.append((RENAME.get(name, name), kind))
            paths.append((name,))
    return RowLayout(topic, tuple(cols), tuple(paths))


def _scalar(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, datetime):
        return v.timestamp()
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def flatten(topic: str, record: BaseModel) -> dict[str, Any]:
    """One snapshot row (without the bookkeeping columns) from a validated record."""
    layout = row_layout(topic)
    row: dict[str, Any] = {}
    for (col, _), path in zip(layout.columns, layout.paths):
        v: Any = record
        for p in path:
            v = getattr(v, p, None)
        row[col] = _scalar(v)
    return row
