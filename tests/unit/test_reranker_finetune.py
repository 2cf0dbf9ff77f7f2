"""Fine-tuning the cross-encoder (trainer/reranker/finetune.py) with either loss: pairs (bce)
or the shown lists (lambda)."""
from __future__ import annotations

import pandas as pd
import pytest

from trainer.reranker.finetune import FineTuneParams, fine_tune, ranked_lists

PAIRS = pd.DataFrame({
    "query": ["wing lift"] * 3 + ["heat flux"] * 3 + ["shell"] * 2,
    "text": ["lift of swept wings", "heat in slabs", "buckling of shells",
             "heat flux in boundary layers", "lift of delta wings", "vibration of cones",
             "shells under load", "shell buckling"],
    "label": [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0],
    "list_id": ["r1"] * 3 + ["r2"] * 3 + ["r3"] * 2,
})


def test_an_unknown_loss_is_refused_before_anything_trains():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        FineTuneParams(loss="hinge")


def test_lists_without_both_a_like_and_a_dislike_teach_no_order():
    lists = ranked_lists(PAIRS)
    assert lists["query"] == ["wing lift", "heat flux"]  # r3: two likes, nothing to order
    assert lists["labels"] == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="no list has both a like and a dislike"):
        fine_tune(None, PAIRS[PAIRS["list_id"] == "r3"], FineTuneParams(loss="lambda"))


@pytest.mark.parametrize("loss", ["bce", "lambda"])
def test_either_loss_takes_steps_that_change_the_scores(loss, tmp_path):
    from trainer.reranker.pipeline import load_cross_encoder

    model = load_cross_encoder(None, True, "cpu", 32)
    pairs = list(zip(PAIRS["query"], PAIRS["text"]))
    before = model.predict(pairs)
    # three steps: the first warms up from a learning rate of 0
    fine_tune(model, PAIRS, FineTuneParams(loss=loss, max_steps=3, batch_size=4, learning_rate=1e-3),
              device="cpu", progress=False, work_dir=tmp_path)
    assert abs(model.predict(pairs) - before).max() > 1e-4
