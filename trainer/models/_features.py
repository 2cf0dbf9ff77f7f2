"""Metadata as tokens: what the feature-aware models (two-tower, LightFM, content) read.

Item metadata is a frame indexed by ``item_id`` with the catalog fields (``title``,
``text``, ``category``, ``subcategory``...); user metadata is indexed by ``user_id``
(``segment``, ``profession``, ``level``...). Multi-valued fields use ``|`` (MovieLens
genres: ``"Action|Comedy"``).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from trainer.data.interactions import Interactions

ITEM_CATEGORICAL = ("category", "subcategory", "level")
USER_CATEGORICAL = ("segment", "profession", "level")
TEXT_FIELDS = ("title", "text")
_WORD = re.compile(r"[a-z0-9]+")


def _aligned(meta: pd.DataFrame | None, ids: np.ndarray) -> pd.DataFrame | None:
    if meta is None or meta.empty:
        return None
    meta = meta.copy()
    meta.index = meta.index.astype(str)
    return meta[~meta.index.duplicated(keep="last")].reindex(ids)


def categorical_tokens(meta: pd.DataFrame | None, ids: np.ndarray, fields: tuple[str, ...]) -> list[list[str]]:
    """``field:value`` tokens per id (in ``ids`` order); empty lists where nothing is known.

    >>> m = pd.DataFrame({"category": ["A|B", None]}, index=["i1", "i2"])
    >>> categorical_tokens(m, np.array(["i1", "i2", "i3"]), ("category",))
    [['category:A', 'category:B'], [], []]
    """
    aligned = _aligned(meta, ids)
    out: list[list[str]] = [[] for _ in ids]
    if aligned is None:
        return out
    for field in fields:
        if field not in aligned:
            continue
        for pos, value in enumerate(aligned[field].tolist()):
            if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
                continue
            out[pos].extend(f"{field}:{v.strip()}" for v in str(value).split("|") if v.strip())
    return out


def item_text(meta: pd.DataFrame | None, ids: np.ndarray, fields: tuple[str, ...] = TEXT_FIELDS + ("category", "subcategory")) -> list[str]:
    """One document per item: its text fields joined (``|`` in categories read as spaces).

    >>> item_text(pd.DataFrame({"title": ["Toy Story"], "category": ["Animation|Comedy"]}, index=["1"]), np.array(["1"]))
    ['Toy Story Animation Comedy']
    """
    aligned = _aligned(meta, ids)
    if aligned is None:
        return ["" for _ in ids]
    parts = []
    for field in fields:
        if field in aligned:
            parts.append(aligned[field].fillna("").astype(str).str.replace("|", " ", regex=False))
    if not parts:
        return ["" for _ in ids]
    joined = parts[0]
    for p in parts[1:]:
        joined = joined + " " + p
    return [" ".join(doc.split()) for doc in joined.tolist()]


def words(text: str) -> list[str]:
    """Lower-case word tokens.

    >>> words("Toy Story (1995)")
    ['toy', 'story', '1995']
    """
    return _WORD.findall(text.lower())


def item_tokens(data: Interactions) -> list[list[str]]:
    return categorical_tokens(data.item_meta, data.item_ids, ITEM_CATEGORICAL)


def user_tokens(data: Interactions) -> list[list[str]]:
    return categorical_tokens(data.user_meta, data.user_ids, USER_CATEGORICAL)


def vocabulary(token_lists: list[list[str]]) -> dict[str, int]:
    """Token -> index (sorted, so the same data gives the same vocabulary)."""
    return {t: i for i, t in enumerate(sorted({t for toks in token_lists for t in toks}))}
