"""`streamrec ope` offline: a snapshot of impressions (with propensities) and clicks, a popularity
run as the challenger; the command prints the estimates, and says clearly what is missing."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infra.cli import app
from schemas.events import Interaction
from trainer.data.rows import flatten
from trainer.data.snapshot import Snapshot


def _train(tmp_path) -> str:
    rows = ["user_id,item_id,timestamp,type"]
    for u in range(30):
        for j in range(6):
            rows.append(f"u{u},i{(u + j * j) % 12},{1_700_000_000 + u * 10 + j},click")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    res = CliRunner().invoke(app, ["train", "--interactions", str(tmp_path / "train.csv"), "--model", "popularity",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[-1]


def _snapshot(path, n_requests: int = 40) -> None:
    events = []
    for r in range(n_requests):
        user = f"u{r % 30}"
        for pos in range(3):
            item = f"i{(r + pos) % 12}"
            prop = 0.8 if pos else 1.0
            events.append(Interaction(event_id=f"r{r}-{pos}", type="impression", user_id=user, item_id=item,
                                      ts=1_800_000_000 + r, context={"request_id": f"r{r}", "position": pos,
                                                                      "strategy": "popularity", "propensity": prop}))
            if (r + pos) % 4 == 0:
                events.append(Interaction(event_id=f"c{r}-{pos}", type="click", user_id=user, item_id=item,
                                          ts=1_800_000_000 + r + 1, context={"request_id": f"r{r}"}))
    records = [{**flatten("interactions", e), "topic": "interactions", "partition": 0, "offset": n}
               for n, e in enumerate(events)]
    Snapshot(path).append(records, "interactions", {0: len(records)})


def test_ope_prints_three_estimates_beside_the_logged_ctr_and_says_what_is_missing(env):
    res = CliRunner().invoke(app, ["ope", "--run", "nope"])
    assert res.exit_code == 2 and "no run 'nope'" in res.output
    run = _train(env)
    res = CliRunner().invoke(app, ["ope", "--run", run])
    assert res.exit_code == 2 and "no snapshot yet" in res.output
    res = CliRunner().invoke(app, ["ope", "--run", run, "--replay"])
    assert res.exit_code == 3 and "no broker configured" in res.output

    _snapshot(env / "data" / "snapshot")
    res = CliRunner().invoke(app, ["ope", "--run", run, "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["requests"] == 40 and got["impressions"] == 120
    assert got["explored_share"] == pytest.approx(2 / 3)
    assert got["logged_strategies"] == {"popularity": 40}
    assert set(got["estimates"]) == {"logged", "ips", "snips", "dr"}
    for e in got["estimates"].values():
        assert e["ci"][0] <= e["value"] <= e["ci"][1]
    text = CliRunner().invoke(app, ["ope", "--run", run])
    assert text.exit_code == 0 and "doubly robust" in text.stdout and "self-normalised IPS" in text.stdout

