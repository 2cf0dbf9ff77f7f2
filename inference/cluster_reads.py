"""The API's multi-key reads on a Redis Cluster (docs/redis-cluster.md).

On a single node the home and basket reads are one Lua script each (``inference/lua/home.lua``,
``inference/basket/fetch.lua``): they read a user's keys, global popularity and the
co-occurrences of several items, which live in different hash slots on a cluster. There the same
reads go as pipelines (redis-py sends each node its commands at once) and come back in the very
shape the scripts return, so everything above them is the same in both modes. Two or three round
trips instead of one, on the Redis-cache-miss path only.
"""
from __future__ import annotations

from typing import Any

import orjson


def _zrev(pipe: Any, key: str, n: int) -> None:
    # the raw command: a flat [member, score, ...] list, as the scripts return it
    pipe.execute_command("ZREVRANGE", key, 0, n - 1, "WITHSCORES")


def _flat(rows: Any) -> list:
    """A WITHSCORES reply as the scripts return it: [member, score, ...] (redis-py may pair it up)."""
    out: list = []
    for r in rows or ():
        if isinstance(r, (list, tuple)):
            out += [r[0], r[1]]
        else:
            out.append(r)
    return out


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def home_reads(client: Any, keys: list[str], args: tuple) -> list:
    """What ``home.lua`` returns for the same KEYS and ARGV (``inference.retrieval.HomeArgs``)."""
    version_key, profile_key, seen_key, recent_key, pop_global_key, pop_trend_key = keys
    (n, recent_n, pairs_of, pairs_n, trend_n, full, want_cached,
     recs0, recs_a, recs_b, seg_a, seg_b, pairs_a, pairs_b, pending_idx, pending, pending_ttl) = args
    pipe = client.pipeline()
    pipe.get(version_key)
    if want_cached:
        pipe.get(recs0)
    got = await pipe.execute()
    version = _text(got[0]) if got[0] is not None else "0"
    if want_cached:
        cached = got[1]
        if version != "0":
            cached = await client.get(f"{recs_a}{version}{recs_b}")
        if cached is not None:
            return [version, cached]
    pipe = client.pipeline()
    if pending_idx:  # before the user's reads, on the same node (one slot): as the script does it
        pipe.sadd(pending_idx, pending)
        pipe.expire(pending_idx, pending_ttl)
    marks = 2 if pending_idx else 0
    pipe.hmget(profile_key, "segment", "profession", "level")
    pipe.smembers(seen_key)
    _zrev(pipe, pop_global_key, n)
    if full:
        pipe.lrange(recent_key, 0, recent_n - 1)
        _zrev(pipe, pop_trend_key, trend_n)
    got = (await pipe.execute())[marks:]
    prof, seen, popg = got[0], list(got[1]), _flat(got[2])
    recent, trend = (got[3], _flat(got[4])) if full else ([], [])
    seg = next((_text(v) for v in prof[:2] if v), None)
    sources: list[str] = []
    for it in recent:
        if len(sources) >= pairs_of:
            break
        if _text(it) not in sources:
            sources.append(_text(it))
    pipe = client.pipeline()
    if seg:
        _zrev(pipe, f"{seg_a}{seg}{seg_b}", n)
    for it in sources:
        _zrev(pipe, f"{pairs_a}{it}{pairs_b}", pairs_n)
    got = await pipe.execute() if (seg or sources) else []
    segpop = _flat(got[0]) if seg else []
    pairs = [[it, _flat(rows)] for it, rows in zip(sources, got[1:] if seg else got)]
    return [version, None, prof, seen, popg, segpop, recent, trend, pairs]


async def basket_reads(client: Any, lists: list[list], item_template: list[str], basket: list[str]) -> bytes:
    """What ``inference/basket/fetch.lua`` returns (its JSON) for the same lists, items and basket."""
    pipe = client.pipeline()
    for key, limit in lists:
        if int(limit) > 0:
            _zrev(pipe, key, int(limit))
    got = iter(await pipe.execute() if any(int(limit) > 0 for _, limit in lists) else [])
    out_lists = [[_text(v) for v in _flat(next(got))] if int(limit) > 0 else [] for _, limit in lists]
    order = list(dict.fromkeys(list(basket) + [res[j] for res in out_lists for j in range(0, len(res), 2)]))
    pipe = client.pipeline()
    for item in order:
        pipe.hmget(f"{item_template[0]}{item}{item_template[1]}", "title", "category", "private_label")
    meta = {}
    for item, f in zip(order, await pipe.execute() if order else []):
        if any(v is not None for v in f):
            meta[item] = [_text(v) if v is not None else "" for v in f]
    return orjson.dumps({"lists": out_lists, "meta": meta})
