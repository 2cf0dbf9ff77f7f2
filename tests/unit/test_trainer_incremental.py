"""``streamrec train --incremental``: the serving run updated with the events since it was
trained (warm start, its policy, no search), through the same promotion gate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_trainer_cli import invoke, stdout_lines, tiny_csv  # noqa: F401 - fixtures (env: conftest)

FAST = ["-p", "multvae.epochs=3", "-p", "two_tower.epochs=2", "-p", "patience=null"]
MODELS = ["-m", "ease", "-m", "multvae", "-m", "two_tower"]


def test_incremental_update_learns_new_items_and_goes_through_the_gate(env, tiny_csv):  # noqa: F811
    first = invoke("train", "-i", tiny_csv, *MODELS, *FAST, "--promote", "--no-progress")
    assert first.exit_code == 0, first.output
    base = Path(stdout_lines(first)[-1])
    # nothing new: no run
    same = invoke("train", "-i", tiny_csv, "--incremental", "--no-progress")
    assert same.exit_code == 0, same.output
    assert "nothing new" in same.stdout
    # later events: a new item i_new seen by group 0's users, a new user
    lines = tiny_csv.read_text().splitlines()
    lines += [f"u{u},i_new,1800000000,click" for u in range(0, 40, 2)]
    lines += ["u_new,i0,1800000100,click", "u_new,i2,1800000101,click"]
    tiny_csv.write_text("\n".join(lines) + "\n")
    update = invoke("train", "-i", tiny_csv, "--incremental", "--promote", "--no-progress")
    assert update.exit_code == 0, update.output
    assert "updated " + base.name + " with 22 new events" in update.stdout
    run = Path(stdout_lines(update)[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["incremental"]["base_run"] == base.name and metrics["incremental"]["new_events"] == 22
    assert metrics["incremental"]["models"]["multvae"].startswith("warm start")
    assert metrics["incremental"]["models"]["ease"] == "rebuilt"
    assert json.loads((run / "policy.json").read_text())["components"] == \
        json.loads((base / "policy.json").read_text())["components"]
    assert "i_new" in json.loads((run / "item_ids.json").read_text())
    # the gate ran (promoted or refused, with both figures), and the new run is servable
    assert "promot" in update.stdout.lower() or "refus" in update.stdout.lower()
    users = run.parent / "users.txt"
    users.write_text("u_new\nu2\n")
    out = run.parent / "recs.jsonl"
    rec = invoke("recommend", "--run", run, "--users", users, "--k", "5", "--out", out)
    assert rec.exit_code == 0, rec.output
    recs = {r["user_id"]: r["items"] for r in map(json.loads, out.read_text().splitlines())}
    assert len(recs["u_new"]) == 5 and "i0" not in recs["u_new"]


def test_incremental_without_a_serving_run_says_what_to_do(env, tiny_csv):  # noqa: F811
    result = invoke("train", "-i", tiny_csv, "--incremental", "--no-progress")
    assert result.exit_code != 0
    assert "no serving run" in result.output


def test_the_default_profile_refits_warm(env, tiny_csv):  # noqa: F811
    result = invoke("train", "-i", tiny_csv, *MODELS, *FAST, "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((Path(stdout_lines(result)[-1]) / "metrics.json").read_text())
    assert metrics["refit"]["ease"] == "refitted"
    assert metrics["refit"]["multvae"] in ("warm start from the validation fit",
                                           "validation fit kept (not in the policy), all data attached")
