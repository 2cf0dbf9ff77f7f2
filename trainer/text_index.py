"""The search index of the catalogue: bi-encoder embeddings in FAISS, and BM25 (``bm25s``).

Built from the items' text (``item_text``: title, text, category) by ``build_text_index``
into a folder of ``artifact_dir/search/``; ``artifact_dir/search/current`` points at the
one the API serves. Layout::

    item_ids.json     item ids, the row order of everything below
    texts.json        the text each item was indexed with (what the cross-encoder reads)
    embeddings.npy    L2-normalised MiniLM embeddings (n_items x 384)
    faiss.index       FAISS inner-product index over them
    bm25/             the bm25s index (English stop words, no stemming)
    info.json         model, number of items, when
    COMPLETE          written last

``TextIndex.first_stage`` is the retrieval of search: the dense and the BM25 rankings fused
by reciprocal rank fusion (``ranking.rerank.rrf``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ranking.rerank import rrf
from ranking.types import Scored
from schemas.errors import ArtifactError, InvalidDataset

SEARCH_DIR = "search"
CURRENT = "current"
STOPWORDS = "en"
MAX_TEXT_CHARS = 2000  # longer texts are cut: the cross-encoder reads 256 tokens at most anyway


def item_text(title: Any = None, text: Any = None, category: Any = None) -> str:
    """The one text an item is searched and reranked by.

    >>> item_text("Wing lift", "A study of lift.", "aero")
    'Wing lift. A study of lift. (aero)'
    >>> item_text(None, float("nan"), None)
    ''
    """
    parts = [str(v).strip() for v in (title, text) if isinstance(v, str) and v.strip()]
    out = parts[0] if parts else ""
    for p in parts[1:]:
        out = f"{out.rstrip('.')}. {p}"
    if isinstance(category, str) and category.strip():
        out = f"{out} ({category.strip()})" if out else category.strip()
    return out[:MAX_TEXT_CHARS]


def texts_from_meta(meta) -> dict[str, str]:
    """``{item_id: text}`` of a catalog frame indexed by item id (``Source.item_meta``);
    items with no text at all are left out."""
    if meta is None or len(meta) == 0:
        return {}
    cols = {c: meta[c] if c in meta.columns else None for c in ("title", "text", "category")}
    out = {}
    for n, item in enumerate(meta.index):
        t = item_text(*(cols[c].iloc[n] if cols[c] is not None else None for c in ("title", "text", "category")))
        if t:
            out[str(item)] = t
    return out


def bm25_tokens(texts: list[str]):
    """``texts`` tokenised the way the BM25 index is (English stop words, no stemming)."""
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False)


def embed(encoder, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """L2-normalised float32 embeddings of ``texts``."""
    emb = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress,
                         convert_to_numpy=True)
    return np.ascontiguousarray(emb, dtype=np.float32)


def texts_digest(texts: Mapping[str, str]) -> str:
    """A fingerprint of the indexed catalogue: an unchanged one needs no new index.

    >>> texts_digest({"a": "x", "b": "y"}) == texts_digest({"b": "y", "a": "x"})
    True
    """
    import hashlib

    return hashlib.sha256(json.dumps(sorted(texts.items())).encode()).hexdigest()


def refresh_text_index(artifact_dir: Path, texts: Mapping[str, str], load_encoder: Callable[[], Any],
                       progress: bool = False) -> Path | None:
    """Build and serve a new index of ``texts`` unless the serving one holds exactly them
    (``streamrec train`` calls this, so the index is built with the run). None: nothing built."""
    if not texts:
        return None
    current = current_index(artifact_dir)
    if current is not None:
        try:
            if json.loads((current / "info.json").read_text()).get("texts_digest") == texts_digest(texts):
                return None
        except (OSError, ValueError):
            pass  # an unreadable index is rebuilt
    out = build_text_index(texts, new_index_dir(artifact_dir), load_encoder(), progress=progress)
    point_current(search_root(artifact_dir), out)
    return out


def build_text_index(texts: Mapping[str, str], out_dir: Path, encoder, progress: bool = False) -> Path:
    """Index ``texts`` ({item_id: text}) into ``out_dir``; ``COMPLETE`` last."""
    import bm25s
    import faiss

    if not texts:
        raise InvalidDataset("no item has a title or text to index: load a catalog first "
                             "(`streamrec import --format catalog FILE`, or --items FILE)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = list(texts)
    docs = [texts[i] for i in ids]
    emb = embed(encoder, docs, progress=progress)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    faiss.write_index(index, str(out_dir / "faiss.index"))
    np.save(out_dir / "embeddings.npy", emb)
    retriever = bm25s.BM25()
    retriever.index(bm25_tokens(docs), show_progress=False)
    retriever.save(str(out_dir / "bm25"))
    (out_dir / "item_ids.json").write_text(json.dumps(ids))
    (out_dir / "texts.json").write_text(json.dumps(docs))
    (out_dir / "info.json").write_text(json.dumps({
        "items": len(ids), "dim": int(emb.shape[1]), "bi_encoder": "all-MiniLM-L6-v2",
        "texts_digest": texts_digest(texts), "built": datetime.now(timezone.utc).isoformat()}, indent=2))
    (out_dir / "COMPLETE").write_text(datetime.now(timezone.utc).isoformat())
    return out_dir


@dataclass
class TextIndex:
    """A loaded search index; ``encoder`` embeds queries (set by the caller, shared)."""

    path: Path
    item_ids: list[str]
    texts: list[str]
    index: Any  # faiss
    bm25: Any  # bm25s.BM25
    info: dict = field(default_factory=dict)
    encoder: Any = None
    position: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {item: n for n, item in enumerate(self.item_ids)}

    def __len__(self) -> int:
        return len(self.item_ids)

    def text_of(self, item: str) -> str | None:
        pos = self.position.get(item)
        return self.texts[pos] if pos is not None else None

    def embed_query(self, query: str) -> np.ndarray:
        if self.encoder is None:
            raise ArtifactError("the search index has no query encoder loaded")
        return embed(self.encoder, [query])[0]

    def dense(self, query_vec: np.ndarray, n: int) -> Scored:
        n = min(n, len(self))
        if n <= 0:
            return []
        scores, pos = self.index.search(np.ascontiguousarray(query_vec.reshape(1, -1), dtype=np.float32), n)
        return [(self.item_ids[p], float(s)) for p, s in zip(pos[0], scores[0]) if p >= 0]

    def lexical(self, query: str, n: int) -> Scored:
        """BM25's top ``n``; items without a query term are left out."""
        n = min(n, len(self))
        if n <= 0:
            return []
        docs, scores = self.bm25.retrieve(bm25_tokens([query]), k=n, show_progress=False)
        return [(self.item_ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]

    def first_stage(self, query: str, n: int, rrf_k: int = 60,
                    allow: Callable[[str], bool] | None = None) -> tuple[Scored, dict[str, Scored]]:
        """The fused ranking (RRF of dense and BM25, ``n`` from each) and the two parts."""
        parts = {"dense": self.dense(self.embed_query(query), n), "bm25": self.lexical(query, n)}
        if allow is not None:
            parts = {k: [(i, s) for i, s in v if allow(i)] for k, v in parts.items()}
        return rrf({k: [i for i, _ in v] for k, v in parts.items()}, k=rrf_k), parts


def load_text_index(path: Path) -> TextIndex:
    import bm25s
    import faiss

    path = Path(path)
    if not (path / "COMPLETE").exists():
        raise ArtifactError(f"{path} is not a complete search index (no COMPLETE)")
    try:
        return TextIndex(path=path.resolve(), item_ids=json.loads((path / "item_ids.json").read_text()),
                         texts=json.loads((path / "texts.json").read_text()),
                         index=faiss.read_index(str(path / "faiss.index")),
                         bm25=bm25s.BM25.load(str(path / "bm25")),
                         info=json.loads((path / "info.json").read_text()))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: unreadable search index ({exc})") from exc


# --- where indexes live -------------------------------------------------------------------------
def search_root(artifact_dir: Path) -> Path:
    return Path(artifact_dir) / SEARCH_DIR


def stamped_dir(root: Path, prefix: str) -> Path:
    """A new folder name under ``root``: ``prefix_YYYYMMDD_HHMMSS_micro`` (UTC)."""
    return Path(root) / f"{prefix}_{datetime.now(timezone.utc).strftime('%Y%m%d_%H%M%S_%f')}"


def current_under(root: Path, name: str = CURRENT) -> Path | None:
    """The complete folder ``root/name`` points at (None: no link, or not complete)."""
    link = Path(root) / name
    if not (link.is_symlink() or link.exists()):
        return None
    target = link.resolve()
    return target if (target / "COMPLETE").exists() else None


def new_index_dir(artifact_dir: Path) -> Path:
    return stamped_dir(search_root(artifact_dir), "index")


def current_index(artifact_dir: Path) -> Path | None:
    return current_under(search_root(artifact_dir))


def point_current(root: Path, target: Path, name: str = CURRENT) -> None:
    """Point ``root/name`` at ``target`` atomically (a symlink renamed over the old one)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(Path(target).name, tmp)
    os.replace(tmp, root / name)
