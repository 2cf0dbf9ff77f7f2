"""Off-policy estimates and interleaving on simulated traffic with a known truth.

    python benchmarks/ope_simulation.py                    # 200 runs of 20,000 logged lists each
    python benchmarks/ope_simulation.py --runs 50 --requests 5000

OPE (``trainer/ope.py`` on ``trainer/ope_simulation.py``'s logs): the logging policy explores
(ε per slot over all its other candidates, the design of ``ranking/exploration.py``); the target
policy ranks better. For each estimator: mean estimate, its spread over runs, mean interval width
and how often the 95% interval covers the true target CTR. The baseline of the same run is the
naive answer, the logging policy's observed CTR taken as the target's.

Interleaving (``ranking/interleaving.py`` + ``trainer/interleaving_analysis.py``): how often the
sign test declares a winner at α = 0.05 when the two rankers are equal (A/A) and when users
prefer one of them, with lists per experiment as given.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ranking.interleaving import credit, team_draft  # noqa: E402
from trainer.interleaving_analysis import analyse_outcomes  # noqa: E402
from trainer.ope import estimate_all  # noqa: E402
from trainer.ope_simulation import World, simulate  # noqa: E402


def ope_table(runs: int, requests: int, epsilon: float, pool: int | None) -> None:
    world = World()
    truth = world.true_ctr(world.target_noise)
    print(f"\nOPE: ε={epsilon} per slot, pool={'all' if pool is None else pool}, {runs} runs × {requests} lists "
          f"of {world.k}; true target CTR {truth:.4f}, logging policy (no exploration) "
          f"{world.true_ctr(world.logging_noise):.4f}")
    rows = {k: ([], 0, []) for k in ("logged (naive)", "ips", "snips", "dr")}
    t0 = time.perf_counter()
    for seed in range(runs):
        logs, targets = simulate(world, requests, epsilon, pool, seed=seed)
        est = estimate_all(logs, targets)
        for name, key in (("logged (naive)", "logged"), ("ips", "ips"), ("snips", "snips"), ("dr", "dr")):
            vals, cov, widths = rows[name]
            e = est[key]
            vals.append(e.value)
            widths.append(e.ci[1] - e.ci[0])
            rows[name] = (vals, cov + (e.ci[0] <= truth <= e.ci[1]), widths)
    print(f"{'estimator':<16}{'mean':>9}{'bias':>9}{'sd':>9}{'CI width':>10}{'coverage':>10}")
    for name, (vals, cov, widths) in rows.items():
        v = np.array(vals)
        print(f"{name:<16}{v.mean():>9.4f}{v.mean() - truth:>+9.4f}{v.std():>9.4f}{np.mean(widths):>10.4f}"
              f"{cov / runs:>10.3f}")
    print(f"({time.perf_counter() - t0:.1f} s)")


def _interleaving_run(rng, noise_a: float, noise_b: float, lists: int, run: int, n_items: int = 40, k: int = 10):
    items = [f"i{j}" for j in range(n_items)]
    examine = 1.0 / (1.0 + np.arange(k))
    winners = []
    for r in range(lists):
        rel = rng.random(n_items)
        a = [items[j] for j in np.argsort(-(rel + noise_a * rng.standard_normal(n_items)))[:k]]
        b = [items[j] for j in np.argsort(-(rel + noise_b * rng.standard_normal(n_items)))[:k]]
        inter = team_draft(a, b, k, f"{run}-{r}")
        p = examine[: len(inter)] * np.array([rel[int(i[1:])] ** 2 for i, _ in inter])
        out = credit(inter, np.flatnonzero(rng.random(len(inter)) < p).tolist())
        if out.a or out.b:
            winners.append(out.winner)
    return analyse_outcomes(winners)


def interleaving_table(runs: int, lists: int) -> None:
    print(f"\nInterleaving: {runs} experiments of {lists} lists each (position-based clicks), α = 0.05")
    print(f"{'scenario':<44}{'winner declared':>16}{'mean win rate A':>17}")
    rng = np.random.default_rng(1)
    for label, na, nb in (("A/A: equal rankers (noise 0.3 / 0.3)", 0.3, 0.3),
                          ("A better (noise 0.2 / 0.3)", 0.2, 0.3),
                          ("A better (noise 0.1 / 0.4)", 0.1, 0.4)):
        res = [_interleaving_run(rng, na, nb, lists, i) for i in range(runs)]
        print(f"{label:<44}{np.mean([r.significant for r in res]):>16.3f}{np.nanmean([r.win_rate for r in res]):>17.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--interleaving-runs", type=int, default=300)
    ap.add_argument("--lists", type=int, default=300)
    args = ap.parse_args()
    for eps, pool in ((0.2, None), (0.1, None), (0.2, 8)):
        ope_table(args.runs, args.requests, eps, pool)
    interleaving_table(args.interleaving_runs, args.lists)


if __name__ == "__main__":
    main()
