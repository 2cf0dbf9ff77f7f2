"""The Cranfield collection as a reranking test bed (``benchmarks/rerank.py --quality`` and the
notebook): 1,400 abstracts, 225 queries, graded judgments; and like/dislike feedback
simulated on the lists the first stage shows.

Files (``shared/data/cranfield``): ``cran.all.1400`` (``.I`` id, ``.T`` title, ``.W``
abstract), ``cran.qry`` (``.I`` id, ``.W`` text; the judgments number the queries 1..225 in
file order, not by their ``.I``), ``cranqrel`` (query, doc, grade). Grades 1 (a complete
answer) to 4 (minimum interest) are relevant, with gain ``5 - grade``; -1 is not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from schemas.errors import InvalidDataset


@dataclass
class Cranfield:
    docs: dict[str, str]  # doc id -> "title. abstract"
    queries: dict[str, str]  # query id ("1".."225") -> text
    gains: dict[str, dict[str, float]]  # query id -> {doc id: gain}


def _records(path: Path) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    field = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(".I"):
            out.append({"id": line[2:].strip()})
            field = None
        elif line.startswith(".") and len(line) >= 2 and line[1] in "TAWB" and line[2:].strip() == "":
            field = line[1]
            out[-1].setdefault(field, "")
        elif field is not None and out:
            out[-1][field] += " " + line.strip()
    return out


def _clean(text: str) -> str:
    return " ".join(text.replace(" .", ".").split())


def read_cranfield(folder: Path) -> Cranfield:
    folder = Path(folder)
    need = [folder / n for n in ("cran.all.1400", "cran.qry", "cranqrel")]
    missing = [p.name for p in need if not p.exists()]
    if missing:
        raise InvalidDataset(f"{folder}: the Cranfield collection is missing {', '.join(missing)} "
                             f"(expected under shared/data/cranfield)")
    docs = {}
    for r in _records(need[0]):
        title, abstract = _clean(r.get("T", "")), _clean(r.get("W", ""))
        if abstract.startswith(title):  # the abstract repeats the title in most records
            abstract = abstract[len(title):].strip()
        docs[r["id"]] = f"{title.rstrip('.')}. {abstract}".strip()
    queries = {str(n): _clean(r.get("W", "")) for n, r in enumerate(_records(need[1]), start=1)}
    gains: dict[str, dict[str, float]] = {}
    for line in need[2].read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].lstrip("-").isdigit():
            grade = int(parts[2])
            if 1 <= grade <= 4:
                gains.setdefault(parts[0], {})[parts[1]] = float(5 - grade)
    return Cranfield(docs, queries, gains)


def simulate_feedback(shown: Mapping[str, list[str]], queries: Mapping[str, str],
                      gains: Mapping[str, Mapping[str, float]], seed: int = 42,
                      feedback_rate: float = 1.0, noise: float = 0.0,
                      now: Callable[[], float] | None = None) -> pd.DataFrame:
    """Events of users who see each query's list (``shown``: query id -> doc ids, best first):
    impressions with ``context.query`` and a request id, then a like on each judged-relevant
    document and a dislike on the others, for a ``feedback_rate`` share of the shown
    documents (seeded), labels flipped with probability ``noise``."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0.0
    for qid, docs in shown.items():
        rid, user = f"r-cran-{qid}", f"cran-u{qid}"
        for pos, d in enumerate(docs):
            t += 1.0
            rows.append({"type": "impression", "user_id": user, "item_id": d, "timestamp": t, "request_id": rid,
                         "position": pos, "query": queries[qid]})
        for d in docs:
            if rng.random() >= feedback_rate:
                continue
            liked = gains.get(qid, {}).get(d, 0.0) > 0
            if noise and rng.random() < noise:
                liked = not liked
            t += 1.0
            rows.append({"type": "like" if liked else "dislike", "user_id": user, "item_id": d, "timestamp": t,
                         "request_id": rid, "position": None, "query": None})
    return pd.DataFrame(rows)
