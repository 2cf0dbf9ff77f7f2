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


class Snapshot:
    def __init__(self, path: Path):
        self.path = Path(path)

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
            table = pa.Table.from_pylist(records, schema=SCHEMA)
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
        """Every committed record, duplicates (same ``event_id``) dropped, oldest first."""
        man = self.manifest()
        if not man["parts"]:
            return pd.DataFrame({c: pd.Series(dtype=f) for c, f in zip(SCHEMA.names, _pandas_types())})
        tables = [pq.read_table(self.path / p, schema=SCHEMA) for p in man["parts"]]
        df = pa.concat_tables(tables).to_pandas()
        # the same event sent twice (a producer retry) is one interaction
        return df.drop_duplicates("event_id", keep="first").sort_values("timestamp", kind="stable").reset_index(drop=True)

    def read(self) -> Source:
        """The snapshot as a dataset source (the columns every reader produces)."""
        if not (self.path / MANIFEST).exists():
            raise InvalidDataset(f"{self.path}: no snapshot here yet; run `streamrec replay` first")
        df = self.frame()
        report = LoadReport(str(self.path), rows=len(df))
        skipped = self.manifest()["skipped"]
        for reason, n in skipped.items():
            report.drop(f"skipped at replay: {reason}", n)
        return Source(df[COLUMNS].reset_index(drop=True), report, offsets=self.all_offsets())


def _pandas_types() -> list[str]:
    return ["object", "object", "object", "float64", "object", "float64", "object", "object", "object",
            "object", "int32", "int64"]
