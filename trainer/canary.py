"""Canaries: a challenger run served to a share of users as an experiment against the champion,
widened step by step while its guardrails hold, rolled back when one fails, promoted when it wins.

``start`` (``streamrec promote RUN --canary 10``) creates a ``canary`` experiment: arm
``champion`` serves the serving run, arm ``challenger`` the new run, to ``share`` of the users
(namespace ``canary``). ``step`` (a look of ``streamrec monitor``) reads each running canary's
report (``trainer.experiment_report``) and ``judge`` decides:

- **fail**: for CTR or the positive-feedback rate, the whole always-valid interval of the lift
  lies below ``-margin`` (default 5%): the challenger is surely more than 5% worse. The canary is
  rolled back at once (every user back on the champion) and an alert is raised
  (``canary_rollback``, by the monitor).
- **widen**: nothing fails and the challenger has served ``min_impressions`` more impressions
  since the last step: its share moves to the next of ``Settings.canary_steps`` (few users move:
  ``reshare``).
- **promote**: at the last step, both guardrails' lift intervals lie above ``-margin`` (the
  challenger is surely no more than 5% worse) with enough impressions: the run is promoted
  (``trainer.promotion.promote``, forced with the canary as the reason) and the canary ends.
- **wait** otherwise.

The intervals are always-valid (mSPRT): looking at every monitor tick does not inflate the
chance of a wrong rollback or promotion. Every step goes to the experiment's history and to the
run registry's log (``promotions.json``: canary_started, canary_widened, canary_rolled_back,
canary_promoted).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ranking.experiments import Experiment
from schemas.errors import ArtifactError
from schemas.keys import Keys
from schemas.settings import Settings
from trainer.experiment_report import read_days, report
from trainer.experiment_store import ExperimentConflict, ExperimentStore

log = logging.getLogger(__name__)

GUARDRAILS = ("ctr", "positive_rate")
CHAMPION, CHALLENGER = "champion", "challenger"
NAMESPACE = "canary"


@dataclass
class Verdict:
    action: str  # fail, widen, promote, wait
    reason: str
    metric: str | None = None  # the failing guardrail
    figures: dict[str, Any] = field(default_factory=dict)


def steps_from(share: float, configured: list[float]) -> list[float]:
    """The shares a canary goes through: its first share, then the configured larger ones.

    >>> steps_from(0.1, [0.1, 0.25, 0.5])
    [0.1, 0.25, 0.5]
    >>> steps_from(0.3, [0.1, 0.25, 0.5])
    [0.3, 0.5]
    """
    return [share] + sorted(s for s in configured if s > share + 1e-9 and s <= 1.0)


def judge(rep: dict[str, Any], margin: float, min_impressions: int, new_impressions: float, last_step: bool) -> Verdict:
    """What a canary's report calls for (pure).

    ``new_impressions``: the challenger's impressions since its share last changed."""
    arms = {a["name"]: a for a in rep["arms"]}
    ch, champ = arms[CHALLENGER], arms[CHAMPION]
    n_ch, n_champ = ch["exposure"]["impressions"], champ["exposure"]["impressions"]
    figures: dict[str, Any] = {"impressions": {CHALLENGER: n_ch, CHAMPION: n_champ}}
    sure_ok = True
    for metric in GUARDRAILS:
        vs = ch["vs_control"].get(metric)
        if not vs or vs.get("lift_ci") is None or vs["lift"] is None:
            if metric == "ctr":
                sure_ok = False  # no CTR comparison yet: nothing is sure
            continue
        lo, hi = vs["lift_ci"]
        figures[metric] = {"lift": vs["lift"], "lift_ci": [lo, hi], "p_value": vs["p_value"],
                           CHAMPION: champ["metrics"][metric]["value"], CHALLENGER: ch["metrics"][metric]["value"]}
        if hi is not None and math.isfinite(hi) and hi < -margin:
            return Verdict("fail", f"{metric} of the challenger is surely more than {margin:.0%} below the champion "
                                   f"(lift {vs['lift']:+.1%}, always-valid interval [{lo:+.1%}, {hi:+.1%}], "
                                   f"p={vs['p_value']:.3g})", metric, figures)
        if lo is None or not math.isfinite(lo) or lo <= -margin:
            sure_ok = False
    if min(n_ch, n_champ) < min_impressions or new_impressions < min_impressions:
        return Verdict("wait", f"too few impressions since the last step ({new_impressions:.0f} of {min_impressions})",
                       figures=figures)
    if not last_step:
        return Verdict("widen", "the guardrails hold", figures=figures)
    if sure_ok:
        return Verdict("promote", f"the challenger is surely no more than {margin:.0%} below the champion on "
                                  f"{' and '.join(GUARDRAILS)} at the last step", figures=figures)
    return Verdict("wait", "last step: waiting until the guardrails are surely met", figures=figures)


def _store(settings: Settings, client) -> ExperimentStore:  # noqa: ANN001
    return ExperimentStore(client, Keys(settings.redis_prefix), settings.artifact_dir, origin="canary")


def start(settings: Settings, client, run_dir: Path, share: float, now: float | None = None) -> dict[str, Any]:  # noqa: ANN001
    """Serve ``run_dir`` to ``share`` (0-1) of the users as a canary against the serving run."""
    from trainer.artifacts import current_run, verify_run
    from trainer.promotion import record_event

    now = time.time() if now is None else now
    if not 0 < share < 1:
        raise ValueError(f"a canary's share is a percentage between 0 and 100 (exclusive), got {share * 100:g}")
    run_dir = Path(run_dir).resolve()
    problems = verify_run(run_dir)
    if problems:
        raise ArtifactError(f"{run_dir.name} is not a complete run: {'; '.join(problems)}")
    champion = current_run(settings.artifact_dir)
    if champion is None:
        raise ArtifactError("no run is serving: a canary needs a champion (promote the first run directly)")
    if champion == run_dir:
        raise ValueError(f"{run_dir.name} is the serving run already")
    store = _store(settings, client)
    running = [d for d in store.running(now) if d.get("kind") == "canary"]
    if running:
        raise ExperimentConflict(f"canary {running[0]['name']} is running: one canary at a time")
    steps = steps_from(share, settings.canary_steps)
    name = f"canary-{run_dir.name}"[:52] + f"-{int(now)}"
    exp = Experiment.create(name, {CHAMPION: 1 - share, CHALLENGER: share}, kind="canary", namespace=NAMESPACE,
                            policies={CHAMPION: {"run": champion.name}, CHALLENGER: {"run": run_dir.name}})
    doc = store.create(exp, f"canary of {run_dir.name} against {champion.name}", now=now, extra={"canary": {
        "champion": champion.name, "challenger": run_dir.name, "steps": steps, "step": 0,
        "margin": settings.canary_margin, "min_impressions": settings.canary_min_impressions,
        "impressions_at_step": 0}})
    record_event(settings.artifact_dir, "canary_started", run_dir.name, experiment=name, share=share,
                 champion=champion.name, steps=steps)
    return doc


@dataclass
class StepResult:
    experiment: str
    verdict: Verdict
    done: str | None = None  # what was done: widened, rolled_back, promoted


def step(settings: Settings, client, now: float | None = None) -> list[StepResult]:  # noqa: ANN001
    """One look at every running canary: widen, roll back, promote or wait."""
    from trainer.promotion import promote, record_event

    now = time.time() if now is None else now
    store = _store(settings, client)
    out = []
    for doc in store.running(now):
        if doc.get("kind") != "canary" or "canary" not in doc:
            continue
        c = doc["canary"]
        days, users = read_days(client, store.keys, doc, now)
        rep = report(doc, days, users, alpha=settings.experiment_alpha)
        n_ch = next(a for a in rep["arms"] if a["name"] == CHALLENGER)["exposure"]["impressions"]
        last = c["step"] >= len(c["steps"]) - 1
        verdict = judge(rep, c["margin"], c["min_impressions"], n_ch - c.get("impressions_at_step", 0), last)
        res = StepResult(doc["name"], verdict)
        if verdict.action == "fail":
            store.finish(doc["name"], "rolled_back", verdict.reason, now=now)
            doc = store.get(doc["name"])
            doc["canary"]["failed"] = {"metric": verdict.metric, "reason": verdict.reason, "figures": verdict.figures}
            store.update(doc, "canary_failed", now=now, metric=verdict.metric)
            record_event(settings.artifact_dir, "canary_rolled_back", c["challenger"], experiment=doc["name"],
                         reason=verdict.reason, figures=verdict.figures)
            log.warning("canary %s rolled back: %s", doc["name"], verdict.reason)
            res.done = "rolled_back"
        elif verdict.action == "widen":
            share = c["steps"][c["step"] + 1]
            doc = store.set_shares(doc["name"], {CHAMPION: 1 - share, CHALLENGER: share}, verdict.reason, now=now)
            doc["canary"].update(step=c["step"] + 1, impressions_at_step=n_ch)
            store.update(doc, "canary_widened", now=now, share=share)
            record_event(settings.artifact_dir, "canary_widened", c["challenger"], experiment=doc["name"], share=share,
                         figures=verdict.figures)
            res.done = "widened"
        elif verdict.action == "promote":
            from trainer.artifacts import resolve_run

            result = promote(settings, resolve_run(settings.artifact_dir, c["challenger"]), force=True,
                             reason=f"canary {doc['name']} won: {verdict.reason}")
            store.finish(doc["name"], "promoted", verdict.reason, now=now)
            record_event(settings.artifact_dir, "canary_promoted", c["challenger"], experiment=doc["name"],
                         reason=verdict.reason, figures=verdict.figures, notified=result.notified)
            log.info("canary %s promoted %s", doc["name"], c["challenger"])
            res.done = "promoted"
        out.append(res)
    return out


def rolled_back_recently(settings: Settings, client, now: float, within_s: float = 86400.0) -> list[dict[str, Any]]:  # noqa: ANN001
    """Canaries rolled back in the last ``within_s`` (the monitor keeps their alert open meanwhile)."""
    return [d for d in _store(settings, client).all().values()
            if d.get("kind") == "canary" and d.get("status") == "rolled_back"
            and now - (d.get("stop") or 0) < within_s and "failed" in d.get("canary", {})]
