"""The append-only local snapshot of the ``interactions`` topic.

A replay appends one Parquet part per batch and then commits a manifest that lists the
parts and, per topic and partition, the next offset to read. The manifest is replaced
atomically (write + rename), so a replay stopped half-way leaves at most an orphan part
that no manifest names: readers ignore it and the next replay re-reads its records from
the committed offsets. Retraining therefore never depends on topic retention.

Offsets only grow, except when the broker's log of a topic restarted (see
``trainer.replay``): then the parts replayed from the old log leave the snapshot in the
same manifest replace that commits the first records of the new one, unless the replay was
asked to keep them.

Layout::

    <snapshot dir>/
        manifest.json        {"parts": [...], "offsets": {topic: {partition: next_offset}},
                              "rows": n, "skipped": {reason: n}, "updated": iso,
                              "part_topics": {part: topic}, "restarts": [{topic, at, parts_dropped}]}
        part-000001.parquet  the columns of the topic's model (``trainer.data.rows``: event_id,
                             type, user_id, item_id, timestamp, value, strategy, basket_id,
                             profession, ...) plus topic, partition, offset
        catalog/             the same, for the ``catalog`` topic (item metadata; last record wins)
        users/               the same, for the ``users`` topic (user metadata; last record wins)
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import InvalidDataset
from schemas import topics
from trainer.data.rows import COLUMNS, LoadReport, Source, row_layout
from trainer.data.scan import BATCH_ROWS, first_of_each, read_columns

MANIFEST = "manifest.json"
#: kind (the unprefixed topic it replays) → (the column a record is unique on, which duplicate wins)
KINDS = {
    topics.INTERACTIONS: ("event_id", "first"),  # a re-sent event counts once
    topics.CATALOG: ("item_id", "last"),  # an upsert replaces the record
    topics.USERS: ("user_id", "last"),
}


def schema_of(kind: str) -> pa.Schema:
    """The Parquet schema of a kind's parts, derived from its topic's model (``rows``)."""
    return row_layout(kind).schema


class Snapshot:
    def __init__(self, path: Path, kind: str = "interactions"):
        self.path = Path(path)
        self.kind = kind
        self.unique_on, self.keep = KINDS[kind]
        self.schema = schema_of(kind)

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

    def topic_id(self, topic: str) -> str | None:
        """The broker's id of ``topic`` when it was last replayed (None: unknown)."""
        return self.manifest().get("topic_ids", {}).get(topic)

    def all_offsets(self) -> dict[str, dict[str, int]]:
        return self.manifest()["offsets"]

    @property
    def rows(self) -> int:
        return int(self.manifest()["rows"])

    def exists(self) -> bool:
        return bool(self.manifest()["parts"])

    # --- writing -----------------------------------------------------------------------------
    def append(
        self,
        records: "list[dict[str, Any]] | pa.Table",
        topic: str,
        offsets: dict[int, int],
        skipped: dict[str, int] | None = None,
        restart: bool = False,
        topic_id: str | None = None,
    ) -> str | None:
        """Write ``records`` (dicts, or an Arrow table in the kind's schema) as a new part, then commit ``offsets`` (next offset per partition)
        and the skipped counts in one manifest replace. Returns the part's name (None when
        there were no records, in which case only the offsets move).

        Offsets only grow, except with ``restart``: the broker's log of ``topic`` restarted
        (recreated topic, broker with in-memory storage restarted), so the stored offsets
        are replaced by ``offsets`` and, in the same manifest replace, the parts replayed
        from the old log of ``topic`` leave the snapshot (the restarted log is the new truth
        for that topic; ``Snapshot.parts_of`` says which). The caller passes ``restart`` on
        the first commit of such a replay only. A replay that keeps the old rows (the
        operator's choice) calls ``reset_offsets`` first and appends as usual. ``topic_id``
        (the broker's id of the topic, where it reports one) is stored to detect a recreated
        topic next time."""
        self.path.mkdir(parents=True, exist_ok=True)
        man = self.manifest()
        dropped: list[str] = []
        if restart:
            dropped = self.parts_of(topic, man)
            man["parts"] = [p for p in man["parts"] if p not in dropped]
            man["rows"] = max(0, int(man["rows"]) - sum(self._part_rows(p) for p in dropped))
            man["offsets"][topic] = {}
            for name in dropped:
                man.get("part_topics", {}).pop(name, None)
            man.setdefault("restarts", []).append(
                {"topic": topic, "at": datetime.now(timezone.utc).isoformat(), "parts_dropped": len(dropped)})
        part = None
        if records:
            table = records if isinstance(records, pa.Table) else pa.Table.from_pylist(records, schema=self.schema)
            part = self._next_part_name(man)
            pq.write_table(table.select(self.schema.names).cast(self.schema), self.path / part)
            man["parts"].append(part)
            man.setdefault("part_topics", {})[part] = topic
            man["rows"] = int(man["rows"]) + table.num_rows
        topic_offsets = man["offsets"].setdefault(topic, {})
        for p, o in offsets.items():
            topic_offsets[str(p)] = max(int(o), int(topic_offsets.get(str(p), 0)))
        for reason, n in (skipped or {}).items():
            man["skipped"][reason] = man["skipped"].get(reason, 0) + n
        if topic_id:
            man.setdefault("topic_ids", {})[topic] = topic_id
        self._commit(man)
        for name in dropped:  # no manifest names them any more
            (self.path / name).unlink(missing_ok=True)
        return part

    def reset_offsets(self, topic: str, offsets: dict[int, int], topic_id: str | None = None) -> None:
        """Replace the stored offsets of ``topic`` (a restarted log whose old rows are kept)."""
        self.path.mkdir(parents=True, exist_ok=True)
        man = self.manifest()
        man["offsets"][topic] = {str(p): int(o) for p, o in offsets.items()}
        if topic_id:
            man.setdefault("topic_ids", {})[topic] = topic_id
        man.setdefault("restarts", []).append(
            {"topic": topic, "at": datetime.now(timezone.utc).isoformat(), "parts_dropped": 0})
        self._commit(man)

    def parts_of(self, topic: str, man: dict[str, Any] | None = None) -> list[str]:
        """The committed parts replayed from ``topic`` (from the manifest, or from the parts'
        own ``topic`` column for parts written before the manifest recorded it)."""
        man = man if man is not None else self.manifest()
        known = man.get("part_topics", {})
        out = []
        for part in man["parts"]:
            if part in known:
                if known[part] == topic:
                    out.append(part)
                continue
            col = pq.read_table(self.path / part, columns=["topic"]).column("topic")
            if topic in set(col.to_pylist()):
                out.append(part)
        return out

    def _part_rows(self, part: str) -> int:
        try:
            return pq.ParquetFile(self.path / part).metadata.num_rows
        except OSError:
            return 0

    def _next_part_name(self, man: dict[str, Any]) -> str:
        """One past the highest part ever named (parts dropped at a restart leave gaps)."""
        used = [int(p[5:11]) for p in man["parts"] if p[5:11].isdigit()]
        n = max(used + [int(man.get("last_part", 0)), len(man["parts"])]) + 1
        man["last_part"] = n
        name = f"part-{n:06d}.parquet"
        (self.path / name).unlink(missing_ok=True)  # an orphan of a replay that did not commit
        return name

    def _commit(self, man: dict[str, Any]) -> None:
        man["updated"] = datetime.now(timezone.utc).isoformat()
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(man, indent=2))
        os.replace(tmp, self.path / MANIFEST)

    # --- reading -----------------------------------------------------------------------------
    def frame(self, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
        """Every committed record, one per ``event_id`` (interactions: the first, oldest first)
        or per id (catalog / users: the last upsert); ``columns`` of the schema (default all).

        The parts are read ``batch_rows`` at a time and only the columns needed
        (``trainer.data.scan``): strings as integer codes, the log order, the duplicates and
        the time order worked out on arrays, and only the kept rows decoded, so no Python
        object is made per event."""
        man = self.manifest()
        names = list(columns) if columns is not None else self.schema.names
        if not man["parts"]:
            return self.schema.empty_table().select(names).to_pandas()
        time = ["timestamp"] if self.kind == "interactions" else []
        need = list(dict.fromkeys(names + [self.unique_on, "partition", "offset"] + time))
        cols = read_columns([self.path / p for p in man["parts"]], self.schema, need, plain=["event_id"],
                            batch_rows=batch_rows)
        # log order: parts in replay order, offsets within a partition (one key, one partition)
        order = np.lexsort((cols.numbers("offset"), cols.numbers("partition"), cols.part))
        keys = cols.codes[self.unique_on] if self.unique_on in cols.codes else cols.arrays[self.unique_on]
        rows = first_of_each(keys, order, self.keep)
        if time:
            rows = rows[np.argsort(cols.numbers("timestamp")[rows], kind="stable")]
        return cols.take(rows, names).to_pandas()

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
        keep = COLUMNS + ["basket_id", "profession"]
        where = ["topic", "partition", "offset"]
        df = self.frame(keep + where)
        report = LoadReport(str(self.path), rows=len(df))
        skipped = self.manifest()["skipped"]
        for reason, n in skipped.items():
            report.drop(f"skipped at replay: {reason}", n)
        offsets = dict(self.all_offsets())
        for kind in ("catalog", "users"):
            offsets.update(self.meta(kind).all_offsets())
        return Source(df[keep], report, offsets=offsets, positions=df[where],
                      item_meta=self.meta("catalog").meta_frame(), user_meta=self.meta("users").meta_frame())
