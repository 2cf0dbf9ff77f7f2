"""Read a basket's signals from Redis in one round trip (``fetch.lua``), with the streams' keys.

The keys read: ``Keys.pairs(item, segment)`` / ``Keys.pairs_rev(item, segment)`` per basket
item and segment (``ANY`` = global), ``pop:seg:{segment}``, ``pop:global``, and the catalog
hash ``Keys.item(id)`` (``title``, ``category``, ``private_label`` "1"/"0") of every item named.
Redis errors become ``StoreUnavailable`` in ``RedisStore.call``.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

from inference.cluster_reads import basket_reads
from ranking.basket.scoring import pair_sources
from ranking.basket.signals import BasketSignals, ItemMeta
from schemas.basket_profiles import BasketParams
from schemas.keys import Keys

FETCH_LUA = resources.files("inference.basket").joinpath("fetch.lua").read_text()


def plan(keys: Keys, basket: list[str], segments: list[tuple[str, float]], p: BasketParams) -> list[tuple[str, str, str, int, str]]:
    """(kind, segment, item, limit, key) of every list to read, in order.

    >>> [(k, s, i, n) for k, s, i, n, _ in plan(Keys("sr:"), ["a"], [], BasketParams(TOP_PAIRS=5, TOP_POPG=3))]
    [('pairs', 'ANY', 'a', 5), ('rev', 'ANY', 'a', 5), ('popg', '', '', 3)]
    """
    out = []
    for seg, _, limit in pair_sources(segments, p, len(dict.fromkeys(basket))):
        for a in basket:
            out.append(("pairs", seg, a, limit, keys.pairs(a, seg)))
            if p.W_REV > 0:  # a reverse list weighs nothing otherwise
                out.append(("rev", seg, a, limit, keys.pairs_rev(a, seg)))
    for seg, _ in segments:
        if p.TOP_POPP > 0:
            out.append(("popp", seg, "", p.TOP_POPP, keys.pop_seg(seg)))
    out.append(("popg", "", "", p.TOP_POPG, keys.pop_global))
    return out


def _scores(flat: list[Any]) -> dict[str, float]:
    return {_s(flat[i]): float(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def meta_from(raw: dict[str, list[str]]) -> dict[str, ItemMeta]:
    return {k: ItemMeta(title=v[0], category=v[1], private_label=v[2] in ("1", "true", "True"))
            for k, v in raw.items()}


def assemble(steps: list[tuple[str, str, str, int, str]], doc: dict[str, Any]) -> BasketSignals:
    """Turn the script's answer into ``BasketSignals`` (cjson writes an empty list as {})."""
    sig = BasketSignals()
    lists = doc.get("lists") or []
    if isinstance(lists, dict):
        lists = [lists.get(str(i + 1), []) for i in range(len(steps))]
    for (kind, seg, item, _, _), flat in zip(steps, lists):
        scores = _scores(flat if isinstance(flat, list) else [])
        if kind == "pairs":
            sig.pairs.setdefault(seg, {})[item] = scores
        elif kind == "rev":
            sig.pairs_rev.setdefault(seg, {})[item] = scores
        elif kind == "popp":
            sig.pop_seg[seg] = scores
        else:
            sig.pop_global = scores
    meta = doc.get("meta") or {}
    sig.meta = meta_from(meta if isinstance(meta, dict) else {})
    return sig


async def fetch_signals(store, keys: Keys, basket: list[str], segments: list[tuple[str, float]],
                        p: BasketParams) -> BasketSignals:
    """One script call; ``store`` is the API's ``RedisStore`` (errors → ``StoreUnavailable``)."""
    steps = plan(keys, basket, segments, p)
    arg = orjson.dumps({"lists": [[s[4], s[3]] for s in steps], "item": keys.item_template, "basket": basket})
    if store.cluster:  # the same reads, as pipelines: the keys live in several hash slots
        raw = await store.call(lambda c: basket_reads(c, [[s[4], s[3]] for s in steps], keys.item_template, basket))
    else:
        raw = await store.call(lambda c: c.eval(FETCH_LUA, 0, arg))
    return assemble(steps, orjson.loads(raw))


async def fetch_meta(store, keys: Keys, items: list[str]) -> dict[str, ItemMeta]:
    """Catalog fields of a list of ids (enrichment), one pipeline; unknown ids are absent."""
    fields = ("title", "category", "private_label")
    res = await store.pipeline(lambda pipe: [pipe.hmget(keys.item(i), *fields) for i in items])
    raw = {i: [_s(v) if v is not None else "" for v in vals] for i, vals in zip(items, res) if any(v is not None for v in vals)}
    return meta_from(raw)
