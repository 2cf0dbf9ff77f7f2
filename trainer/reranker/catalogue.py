"""Pre-training the cross-encoder on the catalogue's own texts, before it learns from feedback.

The packaged MiniLM is a bi-encoder: as a cross-encoder it has never read a (query, text)
pair, and its scoring head is new. Fine-tuned from there on the feedback of a few hundred
lists, it learns little that carries to new queries: on Cranfield (1,437 feedback pairs of
144 queries) it ranked 26% below the first stage on held-out queries.

The catalogue teaches the task for free. An item whose text is "title. body" gives a query
(its title) that its own body answers; the bodies BM25 ranks highest for that title, of other
items, are near misses. A pass over those pairs (like = the item's own body, dislike = the
near misses) before the feedback put the same reranker 2% above the first stage
(docs/search-reranking.md). No query, judgment or feedback is read here: only item texts.
"""
from __future__ import annotations

import random
import re
from typing import Mapping

import pandas as pd

# "title. body": a first sentence of 15-200 characters, then a body of 10 words or more
TITLE_BODY = re.compile(r"(.{15,200}?)\. (.*)", re.DOTALL)
MIN_BODY_WORDS = 10
NEGATIVES = 3  # near misses per title
MIN_ITEMS = 50  # fewer items with a title and a body: no pre-training (too little to learn the task from)


def title_and_body(text: str) -> tuple[str, str] | None:
    """``(title, body)`` of an item text shaped "title. body", else None.

    >>> title_and_body("Lift of swept wings. Measurements of the lift of swept wings at transonic speeds are given")
    ('Lift of swept wings', 'Measurements of the lift of swept wings at transonic speeds are given')
    >>> title_and_body("Toy Story (1995). (Animation)") is None
    True
    """
    m = TITLE_BODY.match(str(text).strip())
    if m is None or len(m.group(2).split()) < MIN_BODY_WORDS:
        return None
    return m.group(1).strip(), m.group(2).strip()


def catalogue_pairs(texts: Mapping[str, str], max_items: int, negatives: int = NEGATIVES,
                    seed: int = 42) -> pd.DataFrame:
    """Training pairs (columns query, text, label, list_id) from item texts: per item with a
    title and a body (at most ``max_items``, a seeded sample), its title with its own body
    (1.0) and with the bodies of the ``negatives`` other items BM25 ranks highest for the
    title (0.0). Empty when fewer than ``MIN_ITEMS`` items have a title and a body.

    >>> texts = {f"i{n}": f"Item number {n} about topic {n % 7}. " + " ".join(["words"] * 10) + f" t{n % 7}"
    ...          for n in range(60)}
    >>> p = catalogue_pairs(texts, max_items=20)
    >>> len(p), p["list_id"].nunique(), bool(p.groupby("list_id")["label"].sum().eq(1.0).all())
    (80, 20, True)
    """
    from trainer.text_index import bm25_tokens
    import bm25s

    split = {i: tb for i, t in texts.items() if (tb := title_and_body(t)) is not None}
    columns = ["query", "text", "label", "list_id"]
    if len(split) < MIN_ITEMS or max_items <= 0:
        return pd.DataFrame(columns=columns)
    ids = sorted(split)
    bodies = [split[i][1] for i in ids]
    retriever = bm25s.BM25()
    retriever.index(bm25_tokens(bodies), show_progress=False)
    chosen = random.Random(seed).sample(ids, min(max_items, len(ids)))
    titles = [split[i][0] for i in chosen]
    k = min(len(ids), negatives + 3)
    ranked, scores = retriever.retrieve(bm25_tokens(titles), k=k, show_progress=False)
    rows = []
    for item, title, docs, sc in zip(chosen, titles, ranked, scores):
        rows.append((title, split[item][1], 1.0, item))
        near = [ids[int(d)] for d, s in zip(docs, sc) if ids[int(d)] != item and split[ids[int(d)]][0] != title]
        rows += [(title, split[n][1], 0.0, item) for n in near[:negatives]]
    return pd.DataFrame(rows, columns=columns)


PRETRAIN_LR = 5e-5  # the head is new and the task is easier than the feedback's: a larger step than fine-tuning's


def pretrain_on_catalogue(model, texts: Mapping[str, str], max_items: int, epochs: float, seed: int = 42,
                          device: str = "cpu", progress: bool = False, work_dir=None) -> dict | None:
    """Train ``model`` (in place) on ``catalogue_pairs(texts)``; what was done (items, pairs,
    seconds), or None when the catalogue has too few items with a title and a body."""
    import time

    from trainer.reranker.finetune import FineTuneParams, fine_tune

    pairs = catalogue_pairs(texts, max_items, seed=seed)
    if pairs.empty:
        return None
    params = FineTuneParams(epochs=epochs, learning_rate=PRETRAIN_LR, seed=seed, balance=True)
    t0 = time.perf_counter()
    fine_tune(model, pairs, params, device=device, progress=progress, work_dir=work_dir)
    return {"items": int(pairs["list_id"].nunique()), "pairs": len(pairs), "epochs": epochs,
            "learning_rate": PRETRAIN_LR, "negatives": NEGATIVES, "seconds": time.perf_counter() - t0}
