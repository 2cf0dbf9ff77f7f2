"""Fine-tuning the cross-encoder on labelled pairs, the way sentence-transformers (v5+) trains
one: a ``CrossEncoderTrainer`` over a ``datasets.Dataset`` of (query, text, label) with
``BinaryCrossEntropyLoss`` (one logit per pair; like = 1, dislike = 0).

The device comes from ``trainer.device.pick_device`` (the one place CUDA is detected).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneParams:
    epochs: float = 3.0
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1  # passed as warmup_steps: a float below 1 is a share of the steps (transformers 5)
    seed: int = 42
    max_steps: int = -1  # > 0: stop after this many steps (tests, quick runs)

    def to_dict(self) -> dict:
        return asdict(self)


def fine_tune(model, train: pd.DataFrame, params: FineTuneParams = FineTuneParams(), device: str = "cpu",
              progress: bool = True, work_dir: Path | None = None):
    """Train ``model`` (a ``CrossEncoder``) in place on ``train`` (columns query, text,
    label) and return it. Nothing is checkpointed: the caller saves the result."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    if train.empty:
        raise ValueError("no training pairs")
    data = Dataset.from_dict({"query": train["query"].astype(str).tolist(), "text": train["text"].astype(str).tolist(),
                              "label": train["label"].astype(float).tolist()})
    with tempfile.TemporaryDirectory(dir=work_dir) as out:
        args = CrossEncoderTrainingArguments(
            output_dir=out, num_train_epochs=params.epochs, max_steps=params.max_steps,
            per_device_train_batch_size=params.batch_size, learning_rate=params.learning_rate,
            warmup_steps=params.warmup_ratio, seed=params.seed, data_seed=params.seed,
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
            disable_tqdm=not progress, use_cpu=str(device).startswith("cpu"), dataloader_num_workers=0,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=BinaryCrossEntropyLoss(model))
        trainer.train()
    model.model.eval()
    return model
