"""One interactions batch on a Redis Cluster, exactly once without cross-slot atomicity.

On a single node one script applies a batch and its watermark together. On a cluster every key
a script touches must share a hash slot, so a batch is applied in two steps (docs/redis-cluster.md):

1. **Per slot group** (the slot of the users: a user's keys carry the user id as hash tag), the
   batch script (``apply_interactions.lua`` with ``cfg.cluster``) applies the group's rows to the
   users' keys and to the group's working state (sessions, impressions, event_id window), checks
   and moves the group's own offset watermark, and keeps the effects on other slots (popularity,
   trending, co-occurrences, bandit and day counters) in the group's outbox under the drain's
   sequence number — all in one call, so each group commits or not as a whole.
2. **Per target slot** the effects of every group are merged and applied by ``apply_effects.lua``,
   which remembers per partition the last sequence it applied; then the outbox entries go.

A replay (crash, rebalance) re-applies only the groups that had not committed; a drain cut short
is finished from the outboxes (``recover``, which runs before a partition's first batch in this
process and after any failed batch) before a new sequence number is drawn, so a slot never sees
an older drain after a newer one. The groups whose outboxes may hold something are listed per
partition (``Keys.pending_outboxes``), added before step 1 and removed after step 2.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from importlib import resources
from typing import Any

import orjson
from redis import exceptions as rexc

from schemas.keys import Keys, key_slot

log = logging.getLogger(__name__)

_EFFECTS = resources.files("streams").joinpath("lua/apply_effects.lua").read_text()
# the outbox entries of one drain, dropped once every target slot applied them (one slot per command)
_CLEAR = "for _, k in ipairs(cjson.decode(ARGV[2])) do redis.call('HDEL', k, ARGV[1]) end return 1"
GROUP_HOLE = "\x03"  # where the group's tag goes in the serialized config (never in an id)
# keys the batch script does not touch in cluster mode (other slots', the legacy markers, the segment hash)
_ELSEWHERE = ("pop_global", "pop_trend", "trend_meta", "pop_seg", "pairs_any", "pairs_rev_any", "pairs_seg",
              "pairs_rev_seg", "bandit", "stats_day", "comments", "new_events", "new_feedback", "dedupe",
              "user_segments", "sessions")


class ClusterApplier:
    """Applies batches per slot group; ``state`` is the ``StreamState`` that owns the client."""

    def __init__(self, client: Any, keys: Keys, policy: str, topic: str, script_source: str):
        self.redis = client
        self.keys = keys
        self.topic = topic
        self.bandit = keys.bandit(policy)
        templates = dict(keys.interactions_script(policy, group=GROUP_HOLE), watermark=keys.watermark(topic, GROUP_HOLE))
        for name in _ELSEWHERE:  # written by apply_effects.lua, or single-node only: not sent with every call
            templates.pop(name, None)
        self._templates = templates
        # the templates with the group's hole (the others are the same for every group of a call)
        self._grouped = [n for n, t in templates.items() if GROUP_HOLE in (t if isinstance(t, str) else "".join(t))]
        self._sources = {"batch": script_source, "effects": _EFFECTS, "clear": _CLEAR}
        self._sha: dict[str, str] = {}
        self._redis7: bool | None = None
        self._dirty: set[int] = set()  # partitions whose outboxes may hold a drain cut short
        self._clean: set[int] = set()  # partitions recovered in this process
        self._epoch: tuple[float, float] | None = None  # trending (epoch, half-life) last seen

    # --- step 1 ------------------------------------------------------------------------------
    def config(self, cfg_doc: dict, partition: int, seq: int, groups: list[str]) -> bytes:
        """The batch script's config for the slot groups of one node: key templates with the
        group's tag left as a hole, which the script fills for each group."""
        return orjson.dumps(dict(cfg_doc, keys=self._templates, grouped=self._grouped, cluster=True, seq=seq,
                                 groups=groups, outbox=self.keys.outbox(GROUP_HOLE, partition)))

    async def _source(self, name: str) -> str:
        """A script's text. A call touches several slots of one node (one slot per command): Redis 6
        allows it as is, Redis 7 only when the script says so in its flags."""
        if self._redis7 is None:
            await self.redis.initialize()
            info = await self.redis.execute_command("INFO", "server", target_nodes=self.redis.get_random_node())
            self._redis7 = int(str(info.get("redis_version", "6")).split(".")[0]) >= 7
        return ("#!lua flags=allow-cross-slot-keys\n" if self._redis7 else "") + self._sources[name]

    def _by_node(self, groups: list, key_of) -> list[list]:  # noqa: ANN001
        """The groups (slot tags, or slots) split by the node that holds them, as the client's slot map says."""
        nodes: dict[str, list] = defaultdict(list)
        for g in groups:
            nodes[self.redis.get_node_from_key(key_of(g)).name].append(g)
        return list(nodes.values())

    async def apply(self, cfg_doc: dict, rows: list[list], positions: list) -> tuple[int, int, int, int]:
        """Apply one batch (rows of any partitions); returns (new, duplicates, users invalidated, dropped)."""
        by_part: dict[int, tuple[list, list]] = defaultdict(lambda: ([], []))
        for i, row in enumerate(rows):
            p = int(positions[i][0]) if positions else -1
            by_part[p][0].append(row)
            if positions:
                by_part[p][1].append(positions[i])
        totals = [0, 0, 0, 0]
        for p, (prow, ppos) in sorted(by_part.items()):
            got = await self._apply_partition(cfg_doc, p, prow, ppos)
            totals = [a + b for a, b in zip(totals, got)]
        return totals[0], totals[1], totals[2], totals[3]

    async def _apply_partition(self, cfg_doc: dict, p: int, rows: list, positions: list) -> list[int]:
        if p in self._dirty or p not in self._clean:
            await self.recover(p, cfg_doc)
        self._dirty.add(p)  # until this batch's drain is done
        groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for i, row in enumerate(rows):
            g = self.keys.user_group(row[2])
            groups[g][0].append(row)
            if positions:
                groups[g][1].append(positions[i])
        seq = int(await self.redis.incr(self.keys.drain_seq(p)))
        await self.redis.sadd(self.keys.pending_outboxes(p), *groups)
        if self._epoch is None:
            meta = await self.redis.hmget(self.keys.trend_meta, "epoch", "hl")
            self._epoch = (float(meta[0]), float(meta[1])) if meta[0] else (cfg_doc["now"], cfg_doc["hl"])
        doc = dict(cfg_doc, epoch=self._epoch[0], hl=cfg_doc["hl"])
        calls = []
        for node_groups in self._by_node(list(groups), lambda g: self.keys.watermark(self.topic, g)):
            # one call per node: its slot groups, each applied inside its own slot
            calls.append((self.keys.watermark(self.topic, node_groups[0]), self.config(doc, p, seq, node_groups),
                          orjson.dumps([groups[g][0] for g in node_groups]),
                          orjson.dumps([groups[g][1] for g in node_groups])))
        totals = [0, 0, 0, 0]
        effects = []
        for per_group in await self._scripts("batch", calls):
            for r in per_group:
                totals = [a + int(b) for a, b in zip(totals, r[:4])]
                if int(r[0]) > 0:
                    effects.append(orjson.loads(r[4]))
        await self._drain(p, seq, effects, cfg_doc)
        await self._clear(p, {seq: list(groups)})
        self._dirty.discard(p)
        return totals

    async def _scripts(self, name: str, calls: list[tuple]) -> list:
        """EVALSHA of one script per call (KEYS[1] = the call's first value), in one pipeline:
        redis-py sends each node its calls at once. A node without the script gets it loaded."""
        for attempt in (1, 2):
            if name not in self._sha or attempt == 2:
                # SCRIPT LOAD goes to every primary (a node restarted or added has none)
                self._sha[name] = _text(await self.redis.script_load(await self._source(name)))
            pipe = self.redis.pipeline()
            for first, *args in calls:
                pipe.execute_command("EVALSHA", self._sha[name], 1, first, *args)
            try:
                return await pipe.execute()
            except rexc.NoScriptError:
                if attempt == 2:
                    raise
            except rexc.ResponseError as exc:
                if not _moved(exc):
                    raise
                # a slot moved (resharding): the call met a key its node no longer holds. Read the
                # slot map again and let the batch be retried (a connection-class error: waited out)
                await self.redis.nodes_manager.initialize()
                raise rexc.ConnectionError(f"cluster slots moved, batch retried: {exc}") from exc
        return []

    # --- step 2 ------------------------------------------------------------------------------
    async def _drain(self, p: int, seq: int, effects: list[dict], cfg_doc: dict) -> None:
        ops = self.effect_ops(effects, cfg_doc)
        if not ops:
            return
        drained = {slot: self.keys.applied_drains(self.keys.group_of_slot(slot)) for slot in ops}
        results = await self._scripts("effects", [
            (drained[slots[0]], p, seq, orjson.dumps([[drained[slot], ops[slot]] for slot in slots]))
            for slots in self._by_node(list(ops), lambda slot: drained[slot])])
        for r in results:
            if r[1]:
                self._epoch = (float(r[1]), float(r[2]))

    def effect_ops(self, effects: list[dict], cfg_doc: dict) -> dict[int, list[list]]:
        """The merged effects of the groups, as ``apply_effects.lua`` operations per slot."""
        k = self.keys
        z: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        h: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        f: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        trend: dict[str, float] = defaultdict(float)
        comments: list[str] = []
        incr = {k.new_events: 0, k.new_feedback: 0}
        epoch = None
        top = cfg_doc["top_n"]
        for e in effects:
            for item, v in _d(e.get("pop")).items():
                z[k.pop_global][item] += v
            for seg, items in _d(e.get("seg")).items():
                for item, v in _d(items).items():
                    z[k.pop_seg(seg)][item] += v
            scale = 1.0
            if epoch is None:
                epoch = e["epoch"]
            elif e["epoch"] != epoch:  # computed against another epoch: bring to the first one's
                scale = 2 ** ((e["epoch"] - epoch) / cfg_doc["hl"])
            for item, v in _d(e.get("trend")).items():
                trend[item] += v * scale
            for seg, by_a in _d(e.get("pairs")).items():
                for a, by_b in _d(by_a).items():
                    for b, w in _d(by_b).items():
                        z[k.pairs(a, seg)][b] += w
                        z[k.pairs_rev(b, seg)][a] += w
            for arm, n in _d(e.get("pulls")).items():
                h[self.bandit][f"{arm}:pulls"] += int(n)
            for arm, v in _d(e.get("rewards")).items():
                f[self.bandit][f"{arm}:rewards"] += v
            for day, fields in _d(e.get("day")).items():
                for fld, n in _d(fields).items():
                    h[k.stats_day(day)][fld] += int(n)
            for day, fields in _d(e.get("dayf")).items():
                for fld, v in _d(fields).items():
                    f[k.stats_day(day)][fld] += v
            comments += [c for c in (e.get("comments") or []) if isinstance(c, str)]
            incr[k.new_events] += int(e.get("ne") or 0)
            incr[k.new_feedback] += int(e.get("nf") or 0)
        out: dict[int, list[list]] = defaultdict(list)
        for key, members in z.items():
            pairs = key.startswith(f"{k.prefix}pairs")
            op: list = ["z", key, top if pairs else 0]
            for m, v in members.items():
                op += [m, v]
            out[key_slot(key)].append(op)
        for key, fields in h.items():
            out[key_slot(key)].append(["h", key] + [x for kv in fields.items() for x in kv])
        for key, fields in f.items():
            out[key_slot(key)].append(["f", key] + [x for kv in fields.items() for x in kv])
        for key, n in incr.items():
            if n:
                out[key_slot(key)].append(["i", key, n])
        if comments:
            out[key_slot(k.comments)].append(["l", k.comments, cfg_doc["comments_max"]] + comments)
        if trend:
            op = ["t", k.pop_trend, k.trend_meta, epoch, cfg_doc["hl"], cfg_doc["now"], cfg_doc["renorm"]]
            for m, v in trend.items():
                op += [m, v]
            out[key_slot(k.pop_trend)].append(op)
        return out

    async def _clear(self, p: int, seqs: dict[int, list[str]]) -> None:
        """Drop the drained entries from the outboxes: one call per node and sequence."""
        groups: set[str] = set()
        for seq, gs in seqs.items():
            await self._scripts("clear", [
                (self.keys.outbox(node_groups[0], p), str(seq),
                 orjson.dumps([self.keys.outbox(g, p) for g in node_groups]))
                for node_groups in self._by_node(gs, lambda g: self.keys.outbox(g, p))])
            groups.update(gs)
        if groups:
            await self.redis.srem(self.keys.pending_outboxes(p), *groups)

    # --- recovery ----------------------------------------------------------------------------
    async def recover(self, p: int, cfg_doc: dict) -> None:
        """Finish the drains of ``p`` a crash or a failure cut short, oldest first."""
        groups = [_text(g) for g in await self.redis.smembers(self.keys.pending_outboxes(p))]
        by_seq: dict[int, list[tuple[str, dict]]] = defaultdict(list)
        if groups:
            pipe = self.redis.pipeline()
            for g in groups:
                pipe.hgetall(self.keys.outbox(g, p))
            for g, entries in zip(groups, await pipe.execute()):
                for seq, doc in entries.items():
                    by_seq[int(seq)].append((g, orjson.loads(doc)))
        for seq in sorted(by_seq):
            entries = by_seq[seq]
            log.warning("finishing drain %d of partition %d from %d outboxes", seq, p, len(entries))
            await self._drain(p, seq, [e for _, e in entries], cfg_doc)
        await self._clear(p, {seq: [g for g, _ in es] for seq, es in by_seq.items()})
        if groups:
            await self.redis.srem(self.keys.pending_outboxes(p), *groups)
        self._clean.add(p)
        self._dirty.discard(p)


def _moved(exc: Exception) -> bool:
    text = str(exc)
    return "non local key" in text or "MOVED" in text or "ASK" in text or "same slot" in text


def _d(v: Any) -> dict:
    """A Lua table as JSON: an empty one comes back as ``{}`` or ``[]``."""
    return v if isinstance(v, dict) else {}


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
