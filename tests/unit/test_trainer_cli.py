"""The offline contract of DESIGN through the CLI: train --interactions, recommend, score,
plus eval, verify, runs, promote / rollback and reindex; no broker, no Redis."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from infra.cli import app
from trainer.models import MODELS

# tiny epoch counts so every model trains in a second or two
FAST = ["epochs=2", "patience=null"]


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    """40 users in two taste groups over 30 items; users of a group share their items."""
    rows = ["user_id,item_id,timestamp,type"]
    for u in range(40):
        group = u % 2
        for j in range(8):
            item = group * 15 + (u + j * 2) % 15
            rows.append(f"u{u},i{item},{1_700_000_000 + u * 100 + j},{['view', 'click', 'download'][j % 3]}")
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(rows) + "\n")
    items = ["item_id,title,category"] + [f"i{i},item {i} {'red' if i < 15 else 'blue'},{'A' if i < 15 else 'B'}"
                                          for i in range(30)]
    (tmp_path / "items.csv").write_text("\n".join(items) + "\n")
    return path


def invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def stdout_lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def train(csv: Path, *args: str) -> Path:
    res = invoke("train", "--interactions", csv, "--no-progress", *args)
    assert res.exit_code == 0, res.output
    run = Path(stdout_lines(res)[-1])  # the contract: the run directory on the last line
    assert run.is_dir()
    return run


def test_train_recommend_score_with_a_cheap_model(env, tiny_csv):
    run = train(tiny_csv, "--model", "ease", "--model", "popularity", "--tag", "cheap")
    assert run.name.startswith("run_") and run.name.endswith("_cheap")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"ease", "popularity", "policy"}  # the served policy is measured too
    assert json.loads((run / "policy.json").read_text())["name"] == "ease"
    assert metrics["best_model"] in {"ease", "popularity"}
    versions = json.loads((run / "versions.json").read_text())
    assert "numpy" in versions and "snapshot_offsets" in versions
    params = json.loads((run / "params.json").read_text())
    assert params["dataset"]["users"] == 40 and "lambda_" in params["ease"]

    users = env / "users.txt"
    users.write_text("u0\nu1\nstranger\n")
    out = env / "recs.jsonl"
    res = invoke("recommend", "--run", run, "--users", users, "--k", "5", "--out", out, "--model", "ease")
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user_id"] for r in recs] == ["u0", "u1", "stranger"]
    seen = pd.read_csv(tiny_csv).groupby("user_id")["item_id"].apply(set)
    for r in recs[:2]:
        assert len(r["items"]) == 5 and len(r["scores"]) == 5
        assert not set(r["items"]) & seen[r["user_id"]]  # training items excluded
        assert r["scores"] == sorted(r["scores"], reverse=True)
    # users of a taste group are recommended that group's items
    assert all(int(i[1:]) < 15 for i in recs[0]["items"])
    assert all(int(i[1:]) >= 15 for i in recs[1]["items"])
    assert len(recs[2]["items"]) == 5  # an unknown user falls back to popular items

    pairs = env / "pairs.csv"
    pairs.write_text("user_id,item_id\nu0,i3\nu1,i20\nstranger,i1\nu0,unknown-item\n")
    scored = env / "scored.csv"
    res = invoke("score", "--run", run, "--pairs", pairs, "--out", scored)
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(scored)
    assert list(frame.columns) == ["user_id", "item_id", "score"]
    assert frame["score"].notna().tolist() == [True, True, False, False]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_offline_contract_for_every_model(env, tiny_csv, name):
    fast = [a for p in FAST if p.split("=")[0] in _accepted(name) for a in ("--param", p)]
    run = train(tiny_csv, "--model", name, "--items", tiny_csv.parent / "items.csv", *fast)
    users = env / "users.txt"
    users.write_text("u0\nu3\n")
    out = env / "recs.jsonl"
    assert invoke("recommend", "--run", run, "--users", users, "--k", "3", "--out", out).exit_code == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    seen = pd.read_csv(tiny_csv).groupby("user_id")["item_id"].apply(set)
    for r in recs:
        assert 0 < len(r["items"]) <= 3
        assert not set(r["items"]) & seen[r["user_id"]]
    pairs = env / "pairs.csv"
    pairs.write_text("user_id,item_id\nu0,i1\nu3,i2\n")
    scored = env / "scored.csv"
    assert invoke("score", "--run", run, "--pairs", pairs, "--out", scored).exit_code == 0
    assert pd.read_csv(scored)["score"].notna().all()
    assert invoke("verify", run).exit_code == 0


def _accepted(name: str) -> set[str]:
    from trainer.pipeline import accepted_params

    return accepted_params(MODELS[name])


def test_train_help_lists_every_model():
    res = invoke("train", "--help")
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for name in MODELS:
        assert name in text


def test_bad_input_gets_a_message_and_exit_code_2(env, tmp_path, tiny_csv):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu1,i1\n")
    res = invoke("train", "--interactions", bad, "--model", "ease")
    assert res.exit_code == 2 and "user_id" in res.output
    res = invoke("train", "--interactions", tiny_csv, "--model", "nosuchmodel")
    assert res.exit_code == 2 and "nosuchmodel" in res.output
    res = invoke("train", "--interactions", tiny_csv, "--model", "ease", "--param", "ease.nope=1")
    assert res.exit_code == 2 and "nope" in res.output
    res = invoke("recommend", "--users", tiny_csv, "--out", tmp_path / "x.jsonl")
    assert res.exit_code == 2 and "no serving run" in res.output
    res = invoke("train", "--model", "ease")  # no file, no broker, no snapshot
    assert res.exit_code == 2 and "streamrec replay" in res.output


def test_eval_prints_a_table_and_json(env, tiny_csv):
    res = invoke("eval", "--interactions", tiny_csv, "--model", "popularity", "--model", "ease", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "| ease |" in res.stdout and "ndcg@10" in res.stdout and "sampled" in res.stdout
    res = invoke("eval", "-i", tiny_csv, "-m", "ease", "--split", "leave-last-out", "--json", "-", "--no-sampled")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["split"] == "leave-last-out" and 0 <= payload["models"]["ease"]["ndcg@10"] <= 1
    assert invoke("eval", "-i", tiny_csv, "--split", "sideways").exit_code == 2


def test_eval_policy_reports_the_served_lists_beside_the_models(env, tiny_csv):
    res = invoke("eval", "-i", tiny_csv, "-m", "ease", "-m", "itemknn", "--policy", "--no-sampled", "--json", "-",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["models"]
    served = [name for name in rows if name.startswith("policy (")]
    assert len(served) == 1 and 0 < rows[served[0]]["ndcg@10"] <= 1
    assert rows[served[0]]["users"] == rows["ease"]["users"]  # measured on the same test users


def test_runs_promote_rollback_verify_reindex(env, tiny_csv):
    first = train(tiny_csv, "--model", "popularity", "--promote")
    assert (env / "artifacts" / "run_current").resolve() == first
    better = train(tiny_csv, "--model", "ease")
    res = invoke("promote", better.name)
    assert res.exit_code == 0, res.output
    assert "promoted" in res.stdout
    assert (env / "artifacts" / "run_current").resolve() == better
    res = invoke("promote", first.name)  # worse: refused, exit 1, both figures shown
    assert res.exit_code == 1 and "does not beat" in res.stdout
    res = invoke("runs")
    assert res.exit_code == 0 and f"* {better.name}" in res.stdout
    assert invoke("rollback").exit_code == 0
    assert (env / "artifacts" / "run_current").resolve() == first
    listed = json.loads(invoke("runs", "--json").stdout)
    assert [r["current"] for r in listed] == [True, False]

    assert invoke("verify", "current").exit_code == 0
    (better / "COMPLETE").unlink()
    res = invoke("verify", better)
    assert res.exit_code == 1 and "missing COMPLETE" in res.stdout


def test_reindex_rebuilds_faiss_indexes(env, tiny_csv):
    run = train(tiny_csv, "--model", "ncf", "--param", "epochs=1", "--param", "embedding_dim=8")
    index = run / "faiss" / "ncf.index"
    assert index.exists()
    index.unlink()
    res = invoke("reindex", run)
    assert res.exit_code == 0 and "ncf" in res.stdout
    assert index.exists()


def test_basket_lines_give_the_run_its_basket_pairs(env, tmp_path):
    from trainer.pairs import load_pairs

    csv = tmp_path / "baskets.csv"
    csv.write_text(
        "user_id,item_id,timestamp,type,basket_id,profession\n"
        "u1,a,1,purchase,b1,plumber\nu1,b,1,purchase,b1,plumber\n"
        "u2,a,2,purchase,b2,\nu2,b,2,purchase,b2,\nu2,c,3,purchase,b3,\nu1,c,4,purchase,b4,plumber\n"
    )
    run = train(csv, "--model", "popularity")
    pairs = load_pairs(run)
    assert pairs is not None
    frame = pairs.frame
    assert ((frame["item"] == "a") & (frame["other"] == "b")).any()


def test_verify_api_checks_that_the_api_serves_the_run(env, tiny_csv):
    """`verify RUN --api URL` (the Airflow DAG's last step) asks the API's /version."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    run = train(tiny_csv, "--model", "popularity")
    serving = {"model_run": "run_other"}

    class Version(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            body = json.dumps(serving).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        res = invoke("verify", run, "--api", url, "--wait", "0.5")
        assert res.exit_code == 1 and "serves run_other, not this run" in res.stdout
        serving["model_run"] = run.name
        res = invoke("verify", run, "--api", url, "--wait", "5")
        assert res.exit_code == 0 and f"served by {url}" in res.stdout
    finally:
        server.shutdown()
        server.server_close()


def test_a_search_over_its_budget_stops_at_the_best_so_far_and_says_so(env, tiny_csv, monkeypatch):
    from schemas.settings import get_settings

    monkeypatch.setenv("STREAMREC_TUNE_BUDGET_S", "0")  # spent before the second grid point
    get_settings.cache_clear()
    res = invoke("train", "--interactions", tiny_csv, "--no-progress", "--model", "ease", "--model", "rp3beta")
    assert res.exit_code == 0, res.output
    assert "warning: ease grid: stopped after 1 of" in res.stderr
    assert "the search budget of 0 s ran out" in res.stderr
    run = Path(stdout_lines(res)[-1])
    notes = json.loads((run / "metrics.json").read_text())["tuning"]["stopped_early"]
    assert any(n.startswith("rp3beta grid") for n in notes) and any(n.startswith("blend weights") for n in notes)
    assert json.loads((run / "policy.json").read_text())["components"]  # a policy was still chosen and saved


def test_train_builds_the_search_index_with_the_run(env, tiny_csv, monkeypatch):
    """A catalogue with texts gets its search index with the run; an unchanged one keeps it."""
    from schemas.settings import get_settings
    from trainer.text_index import current_index, load_text_index

    monkeypatch.setenv("STREAMREC_SEARCH_INDEX_ON_TRAIN", "true")
    get_settings.cache_clear()
    items = tiny_csv.parent / "items.csv"
    train(tiny_csv, "--model", "popularity", "--items", items)
    first = current_index(env / "artifacts")
    assert first is not None and len(load_text_index(first)) == 30
    train(tiny_csv, "--model", "popularity", "--items", items)
    assert current_index(env / "artifacts") == first  # the same texts: no new index
    items.write_text(items.read_text().replace("item 3 red", "item 3 crimson"))
    train(tiny_csv, "--model", "popularity", "--items", items)
    second = current_index(env / "artifacts")
    assert second != first and "crimson" in load_text_index(second).text_of("i3")
