"""Fine-tuning the cross-encoder on labelled pairs, the way sentence-transformers (v5+) trains
one: a ``CrossEncoderTrainer`` over a ``datasets.Dataset``, with one of two losses:

- ``bce``: ``BinaryCrossEntropyLoss`` over (query, text, label) pairs (one logit per pair;
  like = 1, dislike = 0), likes weighed up when they are rare;
- ``lambda``: ``LambdaLoss`` over lists (query, [texts], [labels]): the pairs of one shown
  list together, the loss weighing each mis-ordered (like, dislike) pair by what swapping
  them costs NDCG. A reranker only has to order a list, and NDCG@10 is what judges it.
  Lists with no like or no dislike teach an order nothing and are left out.

The device comes from ``trainer.device.pick_device`` (the one place CUDA is detected).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

LOSSES = ("bce", "lambda")


@dataclass(frozen=True)
class FineTuneParams:
    epochs: float = 3.0
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1  # passed as warmup_steps: a float below 1 is a share of the steps (transformers 5)
    seed: int = 42
    max_steps: int = -1  # > 0: stop after this many steps (tests, quick runs)
    loss: str = "bce"  # bce (pairs) | lambda (lists; batch_size then counts lists)
    # weigh likes by dislikes / likes (at most 10) in the loss: with few likes, an unweighted loss is
    # lowest when the model says "dislike" to everything, and it learns the prior instead of relevance
    balance: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:  # said before anything trains, not after the pre-training
            raise ValueError(f"unknown loss {self.loss!r}: use {' or '.join(LOSSES)}")

    def to_dict(self) -> dict:
        return asdict(self)


def fine_tune(model, train: pd.DataFrame, params: FineTuneParams = FineTuneParams(), device: str = "cpu",
              progress: bool = True, work_dir: Path | None = None):
    """Train ``model`` (a ``CrossEncoder``) in place on ``train`` (columns query, text,
    label) and return it. Nothing is checkpointed: the caller saves the result."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, LambdaLoss

    if train.empty:
        raise ValueError("no training pairs")
    if params.loss == "lambda":
        data = Dataset.from_dict(ranked_lists(train))
        if not len(data):
            raise ValueError("no list has both a like and a dislike: the lambda loss has nothing to order "
                             "(use the bce loss)")
    else:
        data = Dataset.from_dict({"query": train["query"].astype(str).tolist(),
                                  "text": train["text"].astype(str).tolist(),
                                  "label": train["label"].astype(float).tolist()})
    with tempfile.TemporaryDirectory(dir=work_dir) as out:
        args = CrossEncoderTrainingArguments(
            output_dir=out, num_train_epochs=params.epochs, max_steps=params.max_steps,
            per_device_train_batch_size=params.batch_size, learning_rate=params.learning_rate,
            warmup_steps=params.warmup_ratio, seed=params.seed, data_seed=params.seed,
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
            disable_tqdm=not progress, use_cpu=str(device).startswith("cpu"), dataloader_num_workers=0,
        )
        if params.loss == "lambda":
            loss = LambdaLoss(model)
        else:
            loss = BinaryCrossEntropyLoss(model, pos_weight=positive_weight(train["label"]) if params.balance else None)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss)
        trainer.train()
    model.model.eval()
    return model


def ranked_lists(pairs: pd.DataFrame) -> dict[str, list]:
    """The pairs as lists for a listwise loss: one row per shown list (``list_id``, else the
    query) with both a like and a dislike, ``{"query", "docs", "labels"}``.

    >>> p = pd.DataFrame({"query": ["q", "q", "q", "r"], "text": ["a", "b", "c", "d"],
    ...                   "label": [1.0, 0.0, 0.0, 1.0], "list_id": ["l1", "l1", "l1", "l2"]})
    >>> ranked_lists(p)
    {'query': ['q'], 'docs': [['a', 'b', 'c']], 'labels': [[1.0, 0.0, 0.0]]}
    """
    key = pairs["list_id"].fillna(pairs["query"]) if "list_id" in pairs.columns else pairs["query"]
    out: dict[str, list] = {"query": [], "docs": [], "labels": []}
    for _, group in pairs.groupby(key.astype(str), sort=True):
        labels = group["label"].astype(float).tolist()
        if max(labels) <= 0.5 or min(labels) > 0.5:
            continue
        out["query"].append(str(group["query"].iloc[0]))
        out["docs"].append(group["text"].astype(str).tolist())
        out["labels"].append(labels)
    return out


def positive_weight(labels: pd.Series, cap: float = 10.0):
    """``torch.tensor(dislikes / likes)``, between 1 and ``cap`` (None when there are no likes).

    >>> float(positive_weight(pd.Series([1.0, 0.0, 0.0, 0.0])))
    3.0
    """
    import torch

    pos = float((labels > 0.5).sum())
    if pos == 0:
        return None
    return torch.tensor(min(cap, max(1.0, (len(labels) - pos) / pos)))
