"""The append-only local snapshot of the ``interactions`` topic.

A replay appends one Parquet part per batch and then commits a manifest that lists the
parts and, per topic and partition, the next offset to read. The manifest is replaced
atomically (write + rename), so a replay stopped half-way leaves at most an orphan part
that no manifest names: readers ignore it and the next replay re-reads its records from
the committed offsets. Retraining therefore never depends on topic retention.

Layout::

    <snapshot dir>/
        manifest.json        {"parts": [...], "offsets": {topic: {partition: next_offset}},
                              "rows": n, "skipped": {reason: n}, "updated": iso}
        part-000001.parquet  columns: event_id, user_id, item_id, timestamp, type, value,
                             strategy, basket_id, profession, topic, partition, offset
        catalog/             the same, for the ``catalog`` topic (item metadata; last record wins)
        users/               the same, for the ``users`` topic (user metadata; last record wins)
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import InvalidDataset
from trainer.data.sources import COLUMNS, LoadReport, Source

MANIFEST = "manifest.json"
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", pa.float64()),
        ("type", pa.string()),
        ("value", pa.float64()),
        ("strategy", pa.string()),
        ("basket_id", pa.string()),
        ("profession", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)

CATALOG_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("category", pa.string()),
        ("subcategory", pa.string()),
        ("level", pa.float64()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("segment", pa.string()),
        ("profession", pa.string()),
        ("level", pa.float64()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)
#: kind → (schema, the column a record is unique on, keep which duplicate)
KINDS = {
    "interactions": (SCHEMA, "event_id", "first"),  # a re-sent event counts once
    "catalog": (CATALOG_SCHEMA, "item_id", "last"),  # an upsert replaces the record
    "users": (USERS_SCHEMA, "user_id", "last"),
}


class Snapshot:
    def __init__(self, path: Path, kind: str = "interactions"):
        self.path = Path(path)
        self.kind = kind
        self.schema, self.unique_on, self.keep = KINDS[kind]

    def meta(self, kind: str) -> "Snapshot":
        """The catalog or users snapshot that sits beside an interactions snapshot."""
        return Snapshot(self.path / kind, kind)

    # --- the manifest ----------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        f = self.path / MANIFEST
        if not f.exists():
            return {"parts": [], "offsets": {}, "rows": 0, "skipped": {}, "updated": None}
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidDataset(f"{f}: unreadable snapshot manifest ({exc}); delete the folder and replay") from exc

    def offsets(self, topic: str) -> dict[int, int]:
        """Next offset to read per partition of ``topic`` (empty for a topic never replayed)."""
        return {int(p): int(o) for p, o in self.manifest()["offsets"].get(topic, {}).items()}

    def all_offsets(self) -> dict[str, dict[str, int]]:
        return self.manifest()["offsets"]

    @property
    def rows(self) -> int:
        return int(self.manifest()["rows"])

    def exists(self) -> bool:
        return bool(self.manifest()["parts"])

    # --- writing -----------------------------------------------------------------------------
    def append(
        self, records: list[dict[str, Any]], topic: str, offsets: dict[int, int], skipped: dict[str, int] | None = None
    ) -> str | None:
        """Write ``records`` as a new part, then commit ``offsets`` (next offset per partition)
        and the skipped counts in one manifest replace. Returns the part's name (None when
        there were no records, in which case only the offsets move)."""
        self.path.mkdir(parents=True, exist_ok=True)
        man = self.manifest()
        part = None
        if records:
            part = f"part-{len(man['parts']) + 1:06d}.parquet"
            while (self.path / part).exists():  # an orphan of a replay that did not commit
                (self.path / part).unlink()
            table = pa.Table.from_pylist(records, schema=self.schema)
            pq.write_table(table, self.path / part)
            man["parts"].append(part)
            man["rows"] = int(man["rows"]) + len(records)
        topic_offsets = man["offsets"].setdefault(topic, {})
        for p, o in offsets.items():
            topic_offsets[str(p)] = max(int(o), int(topic_offsets.get(str(p), 0)))
        for reason, n in (skipped or {}).items():
            man["skipped"][reason] = man["skipped"].get(reason, 0) + n
        man["updated"] = datetime.now(timezone.utc).isoformat()
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(man, indent=2))
        os.replace(tmp, self.path / MANIFEST)
        return part

    # --- reading -----------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """Every committed record, one per ``event_id`` (interactions: the first, oldest first)
        or per id (catalog / users: the last upsert)."""
        man = self.manifest()
        if not man["parts"]:
            return self.schema.empty_table().to_pandas()
        frames = []
        for n, part in enumerate(man["parts"]):
            df = pq.read_table(self.path / part, schema=self.schema).to_pandas()
            df["_part"] = n
            frames.append(df)
        # log order: parts in replay order, offsets within a partition (one key, one partition)
        df = pd.concat(frames, ignore_index=True).sort_values(["_part", "partition", "offset"], kind="stable")
        df = df.drop(columns="_part").drop_duplicates(self.unique_on, keep=self.keep)
        if self.kind == "interactions":
            df = df.sort_values("timestamp", kind="stable")
        return df.reset_index(drop=True)

    def meta_frame(self) -> pd.DataFrame | None:
        """Catalog / users records as metadata indexed by id (None when there are none)."""
        if not self.exists():
            return None
        df = self.frame()
        return df.drop(columns=["topic", "partition", "offset"]).set_index(self.unique_on)

    def read(self) -> Source:
        """The snapshot as a dataset source (the columns every reader produces)."""
        if not (self.path / MANIFEST).exists():
            raise InvalidDataset(f"{self.path}: no snapshot here yet; run `streamrec replay` first")
        df = self.frame()
        report = LoadReport(str(self.path), rows=len(df))
        skipped = self.manifest()["skipped"]
        for reason, n in skipped.items():
            report.drop(f"skipped at replay: {reason}", n)
        offsets = dict(self.all_offsets())
        for kind in ("catalog", "users"):
            offsets.update(self.meta(kind).all_offsets())
        keep = COLUMNS + ["basket_id", "profession"]
        return Source(df[keep].reset_index(drop=True), report, offsets=offsets,
                      item_meta=self.meta("catalog").meta_frame(), user_meta=self.meta("users").meta_frame())
