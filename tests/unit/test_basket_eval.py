"""eval-basket: hold-out, metrics, the three methods, segment modes, and the CLI."""
import json
import random

import pytest
from typer.testing import CliRunner

from infra.cli import app
from trainer.basket_eval import EvalConfig, evaluate, metrics_at_k, split_baskets
from trainer.data.baskets import Basket

ITEMS = {"plumber": ["pipe", "ptfe", "valve", "solder", "flux"], "painter": ["brush", "roller", "paint", "tape", "sheet"]}


def baskets(n=240, timed=True):
    r = random.Random(0)
    out = []
    for i in range(n):
        seg = "plumber" if i % 2 else "painter"
        items = r.sample(ITEMS[seg], 3) + ([r.choice(ITEMS["painter" if seg == "plumber" else "plumber"])] if i % 5 == 0 else [])
        out.append(Basket(f"b{i}", items, segment=seg, ts=float(i) if timed else None))
    return out


def test_latest_baskets_are_held_out_when_timed():
    train, test = split_baskets(baskets(), 10, 0)
    assert [b.basket_id for b in test] == [f"b{i}" for i in range(230, 240)] and len(train) == 230
    a = split_baskets(baskets(timed=False), 10, 3)[1]
    assert a == split_baskets(baskets(timed=False), 10, 3)[1] and a != split_baskets(baskets(timed=False), 10, 4)[1]


def test_metrics():
    assert metrics_at_k(["x", "y"], {"z"}, 2) == (0.0, 0.0, 0.0)
    assert metrics_at_k(["x", "z", "y"], {"z", "y"}, 3) == (1.0, 1.0, 0.5)


@pytest.mark.parametrize("mode", ["auto", "use_order", "none"])
def test_all_methods_same_draws_and_streamrec_learns_complements(mode):
    df = evaluate(baskets(), EvalConfig(n_samples=40, basket_m=1, max_basket_m=2, segment_mode=mode, lightfm_epochs=3,
                                        lightfm_components=8))
    assert set(df["method"]) == {"streamrec", "cooccurrence", "popularity"} and set(df["M"]) == {1, 2}
    assert df.groupby("M")["n"].nunique().eq(1).all()
    hits = df.set_index(["M", "method"])["hit@10"]
    assert hits[(1, "streamrec")] >= hits[(1, "popularity")]


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        evaluate(baskets(), EvalConfig(segment_mode="psychic"))
    with pytest.raises(ValueError):
        evaluate(baskets(), EvalConfig(basket_m=3, max_basket_m=2))


def test_cli_eval_basket(tmp_path):
    f = tmp_path / "lines.csv"
    rows = ["basket_id,item_id,segment,timestamp"] + [f"{b.basket_id},{i},{b.segment},{b.ts}" for b in baskets(120) for i in b.items]
    f.write_text("\n".join(rows) + "\n")
    out = tmp_path / "table.json"
    res = CliRunner().invoke(app, ["eval-basket", str(f), "--n-samples", "20", "--max-basket-m", "2", "--seed", "1",
                                   "--segment-mode", "use_order", "--no-embeddings", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "| 2 | streamrec |" in res.output and "tuned on" in res.output
    doc = json.loads(out.read_text())
    assert len(doc["table"]) == 6 and doc["tuning"]["holdout"].startswith("time")
    shipped = CliRunner().invoke(app, ["eval-basket", str(f), "--n-samples", "20", "--profile", "precision",
                                       "--segment-mode", "none", "--out", str(out)])
    assert shipped.exit_code == 0 and "tuned on" not in shipped.output and len(json.loads(out.read_text())) == 3
    bad = CliRunner().invoke(app, ["eval-basket", str(f), "--segment-mode", "psychic"])
    assert bad.exit_code != 0
