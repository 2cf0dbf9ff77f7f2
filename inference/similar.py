"""Similar items: cosine neighbours over the serving run's item embeddings (FAISS), else what
the stream saw bought or viewed together."""
from __future__ import annotations

from typing import Any

from inference.models import ModelRegistry
from inference.retrieval import ItemCatalog, ann_search
from inference.store import RedisStore
from schemas.errors import NotFound, StoreUnavailable


class SimilarService:
    def __init__(self, store: RedisStore, models: ModelRegistry, catalog: ItemCatalog, max_k: int):
        self.store, self.keys, self.models, self.catalog, self.max_k = store, store.keys, models, catalog, max_k

    async def similar(self, item: str, k: int) -> dict[str, Any]:
        serving = self.models.current
        name = serving.similarity_model() if serving is not None else None
        if serving is not None and name is not None and item in serving.item_index:
            emb = serving.run.embeddings[name]
            pos, scores = ann_search(serving.run.indexes[name], emb[serving.item_index[item]], k + 1)
            items = [(serving.item_ids[p], float(s)) for p, s in zip(pos, scores) if serving.item_ids[p] != item][:k]
            infos = await self.catalog.lookup(self.store, [item])
            title = (infos.get(item).title if infos.get(item) else None) or item
            return {"item_id": item, "model_version": serving.run_id,
                    "items": [{"item_id": i, "score": round(s, 6), "reason": f"similar to {title}"} for i, s in items]}
        # no embeddings for it: what is bought or viewed together, from the stream state
        try:
            rows = await self.store.call(lambda c: c.zrevrange(self.keys.pairs(item), 0, k - 1, withscores=True))
        except StoreUnavailable:
            rows = []
        if not rows:
            if serving is None or name is None:
                raise NotFound(f"no similar items for {item!r}: it has no co-occurrences yet and no trained run "
                               f"has embeddings (train one with `streamrec train --model two_tower`)")
            raise NotFound(f"unknown item {item!r}: not in run {serving.run_id} and no co-occurrences yet")
        infos = await self.catalog.lookup(self.store, [item])
        title = (infos.get(item).title if infos.get(item) else None) or item
        return {"item_id": item, "model_version": serving.run_id if serving else None,
                "items": [{"item_id": (m.decode() if isinstance(m, bytes) else m), "score": float(s),
                           "reason": f"often bought with {title}"} for m, s in rows]}
