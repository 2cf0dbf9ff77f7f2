"""The reranker's pre-training on the catalogue (trainer/reranker/catalogue.py): pairs from item
texts shaped "title. body", and train-reranker running it from the packaged base."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from schemas.settings import Settings
from trainer.reranker.catalogue import MIN_ITEMS, catalogue_pairs, pretrain_on_catalogue, title_and_body

TOPICS = {"wing": "lift drag airfoil wing span sweep", "heat": "heat transfer boundary temperature wall flux",
          "shock": "shock wave mach supersonic compression jump", "buckle": "buckling plate shell load stress panel",
          "flutter": "flutter vibration aeroelastic mode frequency damping"}


def catalogue(per_topic: int = 12) -> dict[str, str]:
    """Items "title. body" whose title and body share their topic's words."""
    out = {}
    for topic, words in TOPICS.items():
        w = words.split()
        for n in range(per_topic):
            title = f"On the {w[n % len(w)]} and {w[(n + 1) % len(w)]} of case {n}"
            body = " ".join(w[(n + k) % len(w)] for k in range(12)) + f" measured in series {n}"
            out[f"{topic}{n}"] = f"{title}. {body}"
    return out


def test_each_title_is_paired_with_its_own_body_and_near_misses_of_other_items():
    texts = catalogue()
    pairs = catalogue_pairs(texts, max_items=1000, negatives=3)
    assert pairs["list_id"].nunique() == len(texts)
    for item, group in pairs.groupby("list_id"):
        title, body = title_and_body(texts[item])
        assert set(group["query"]) == {title}
        assert group.loc[group["label"] == 1.0, "text"].tolist() == [body]
        negatives = group.loc[group["label"] == 0.0, "text"].tolist()
        assert len(negatives) == 3 and body not in negatives
        # BM25's near misses: other items of the same topic, not random ones
        topic_words = set(TOPICS[item.rstrip("0123456789")].split())
        assert all(topic_words & set(t.split()) for t in negatives)


def test_the_sample_is_seeded_and_capped():
    texts = catalogue()
    a, b = catalogue_pairs(texts, max_items=MIN_ITEMS, seed=1), catalogue_pairs(texts, max_items=MIN_ITEMS, seed=1)
    assert a.equals(b) and a["list_id"].nunique() == MIN_ITEMS
    assert set(catalogue_pairs(texts, max_items=MIN_ITEMS, seed=2)["list_id"]) != set(a["list_id"])


def test_a_catalogue_without_titles_and_bodies_is_not_pretrained_on():
    movies = {f"m{n}": f"Movie {n} (1995). (Comedy)" for n in range(200)}  # titles and a genre: no body
    assert catalogue_pairs(movies, max_items=1000).empty
    few = dict(list(catalogue().items())[: MIN_ITEMS - 1])
    assert catalogue_pairs(few, max_items=1000).empty
    assert catalogue_pairs(catalogue(), max_items=0).empty
    assert pretrain_on_catalogue(None, movies, max_items=1000, epochs=1.0) is None  # nothing to train: model untouched


def test_train_reranker_from_the_base_first_learns_on_the_catalogue(tmp_path):
    from trainer.reranker.finetune import FineTuneParams
    from trainer.reranker.pipeline import train_reranker

    texts = catalogue()
    rows, t = [], 0.0
    for q, item in enumerate(sorted(texts)[::5][:12]):  # 12 searches for an item's title, 4 results each
        title, _ = title_and_body(texts[item])
        shown = [item] + [i for i in sorted(texts) if i != item][q * 3: q * 3 + 3]
        for pos, i in enumerate(shown):
            rows.append({"type": "impression", "user_id": f"u{q}", "item_id": i, "timestamp": t,
                         "request_id": f"r{q}", "position": pos, "query": title})
            rows.append({"type": "like" if i == item else "dislike", "user_id": f"u{q}", "item_id": i,
                         "timestamp": t + 1, "request_id": f"r{q}", "position": None, "query": None})
            t += 2
    events = pd.DataFrame(rows)
    settings = Settings(artifact_dir=tmp_path / "artifacts", rerank_pretrain_items=MIN_ITEMS, rerank_threads=1,
                        train_threads=2)
    result = train_reranker(settings, events, texts, allow_small=True, params=FineTuneParams(max_steps=1),
                            device="cpu", progress=False, promote=False)
    pre = result.report["pretrain"]
    assert pre["items"] == MIN_ITEMS and pre["pairs"] == MIN_ITEMS * 4 and pre["seconds"] > 0
    assert result.report["start_from"].endswith(f"pre-trained on {MIN_ITEMS} catalogue titles")
    assert json.loads((result.run_dir / "info.json").read_text())["pretrain"]["items"] == MIN_ITEMS
    assert "pre-trained on 50 catalogue titles" in (result.run_dir / "report.txt").read_text()
