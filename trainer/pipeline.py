"""Training runs: dataset → validation split → fit → evaluate → save a run → (promote).

``train_run`` is what ``streamrec train`` and the scheduler call. Validation holds out a
per-user random share of the user–item pairs (``val_ratio``, ``Settings.val_ratio``), fits every
model on the rest and measures it with ``trainer.evaluation`` (full ranking over unseen
items); ``metrics.json`` records those figures. With ``promote`` and a run serving, the newest
events are first held out for promotion's comparison (``trainer.holdout``). The models saved
in the run are then refitted on all the data (``refit=False`` keeps the validation fits),
so ``recommend`` excludes every item a user interacted with.

``evaluate_split`` is what ``streamrec eval`` calls: several models, one split, one table.
"""
from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ranking.policy import Policy
from schemas.errors import InvalidDataset
from schemas.settings import Settings
from trainer.artifacts import new_run_dir, package_versions, run_score, save_run
from trainer.data.dataset import build_interactions, describe
from trainer.data.filters import Filters
from trainer.data.interactions import Interactions
from trainer.data.sources import Source
from trainer.fit_pool import FitPool, Job, worker_count

log = logging.getLogger(__name__)

SPLITS = ("random", "leave-last-out", "72/8/20")


# --- hyperparameters from the command line -------------------------------------------------------
def parse_value(text: str) -> Any:
    """A CLI value: JSON when it parses (numbers, lists, true/null), the text otherwise.

    >>> parse_value("3"), parse_value("[64, 32]"), parse_value("bce"), parse_value("none")
    (3, [64, 32], 'bce', None)
    """
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def accepted_params(cls: type) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p != "self"}


def parse_params(specs: list[str], models: list[str]) -> dict[str, dict[str, Any]]:
    """``["ncf.epochs=2", "seed=1"]`` → per-model constructor arguments. A bare key goes to
    every model that accepts it; a key no chosen model accepts is an error."""
    from trainer.models import MODELS

    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {spec!r}: expected KEY=VALUE or MODEL.KEY=VALUE")
        value = parse_value(raw)
        target, _, name = key.rpartition(".")
        targets = [target] if target else models
        hit = False
        for m in targets:
            if m not in out:
                raise ValueError(f"--param {spec!r}: model {m!r} is not being trained ({', '.join(models)})")
            if name in accepted_params(MODELS[m]):
                out[m][name] = value
                hit = True
        if not hit:
            raise ValueError(f"--param {spec!r}: no model among {', '.join(targets)} takes a parameter {name!r}")
    return out


# --- datasets ----------------------------------------------------------------------------------
def dataset_from_source(source: Source, settings: Settings) -> Interactions:
    return build_interactions(
        source.events,
        settings.event_strengths,
        Filters.from_settings(settings),
        item_meta=source.item_meta,
        user_meta=source.user_meta,
        include_cold_items=settings.include_cold_items,
    )


def pairs_frame(data: Interactions) -> pd.DataFrame:
    """One row per user–item pair of ``data``: summed strength, latest time and value.

    Splits work on pairs, so a user's view and click of one item never straddle train and test."""
    ev = data.events
    agg = ev.groupby(["user_id", "item_id"], sort=False).agg(
        timestamp=("timestamp", "max"), strength=("strength", "sum"), value=("value", "last"), type=("type", "last")
    )
    return agg.reset_index()


def restrict(data: Interactions, pairs: pd.DataFrame) -> Interactions:
    """``data`` limited to ``pairs``, in the same index space (ids and metadata kept)."""
    return Interactions.from_events(
        pairs, item_meta=data.item_meta, user_meta=data.user_meta, item_ids=data.item_ids, user_ids=data.user_ids
    )


def split_pairs(pairs: pd.DataFrame, split: str, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) pairs for a split name (``random`` 75/25, ``leave-last-out``,
    ``72/8/20`` → train 72 %, test 20 %, the 8 % validation part left out)."""
    from trainer import splits

    if split == "random":
        return splits.random_split(pairs, 0.75, seed=seed)
    if split == "leave-last-out":
        return splits.leave_last_out(pairs)
    if split == "72/8/20":
        train, _val, test = splits.train_val_test_split(pairs, seed=seed)
        return train, test
    raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")


def _limit_threads(n: int) -> None:
    """At most ``n`` compute threads for torch and for the BLAS/OpenMP pools (numpy, scipy,
    LightFM). Two trainings sharing two cores with more threads than cores (the scheduler and a
    `streamrec train`) spin-wait on each other: served-quality's training took 4× as long."""
    if not n:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def _build(name: str, params: dict[str, Any], verbose: bool):
    from trainer.models import MODELS, make_model

    params = dict(params)
    if verbose and "verbose" in accepted_params(MODELS[name]) and "verbose" not in params:
        params["verbose"] = True
    return make_model(name, **params)


def _fit_timed(name: str, params: dict[str, Any], data: Interactions, verbose: bool, seconds: dict[str, float]):
    model = _build(name, params, verbose)
    t0 = time.perf_counter()
    model.fit(data)
    seconds[name] = time.perf_counter() - t0
    return model


#: A model whose validation fit took less than this is refitted from scratch even when the policy
#: does not serve it (a closed form or a neighbour search: cheaper than keeping two kinds of fit).
CHEAP_FIT_S = 3.0


def _refit(name: str, params: dict[str, Any], data: Interactions, validation_fit: Any, policy: Policy | None,
           verbose: bool, seconds: dict[str, float], warm: bool = False, started: Fitting | None = None,
           ) -> tuple[Any, str]:
    """The model a run saves, fitted on all of ``data``, and how it was made.

    - a model the policy does not serve whose fit is costly keeps its validation fit, with all of
      ``data`` attached (its scores read a user's whole row; ``recommend`` excludes everything seen);
    - with ``warm`` (every profile but ``full``), a model that can start warm (``trainer.models._warm``:
      Mult-VAE, two-tower, LightFM) continues from its validation fit for its ``warm_epochs``;
    - anything else is refitted from scratch.

    ``started``: this refit, submitted ahead of time (``train_run`` starts the refits while the
    policy is being chosen); dropped when the validation fit is kept."""
    if validation_fit is not None:
        served = policy is None or name in policy.models
        if not served and seconds.get(name, 0.0) >= CHEAP_FIT_S:
            if started is not None:
                started.cancel()
            validation_fit.data = data
            return validation_fit, "validation fit kept (not in the policy), all data attached"
    if started is None:
        started = Fitting(FitPool(0), name, params, data, validation_fit, warm, verbose)
    model, how, spent = started.result()
    seconds[name] = seconds.get(name, 0.0) + spent
    return model, how


def _refit_fit(name: str, params: dict[str, Any], data: Interactions, validation_fit: Any, warm: bool,
               verbose: bool) -> tuple[Any, str, float]:
    """(the model fitted on ``data``, how, seconds): warm from ``validation_fit`` where it can, else from
    scratch. A ``FitPool`` job."""
    from trainer.models._warm import can_warm_start, warm_fit

    model = _build(name, params, verbose)
    t0 = time.perf_counter()
    if warm and validation_fit is not None and can_warm_start(model, validation_fit):
        warm_fit(model, data, validation_fit)
        return model, "warm start from the validation fit", time.perf_counter() - t0
    model.fit(data)
    return model, "refitted", time.perf_counter() - t0


class Fitting:
    """One model's fit submitted to a ``FitPool``; a model that can be cut into parts fitted apart
    (``members``/``join``: a Mult-VAE ensemble's members) goes out as one job per worker and this
    process, and comes back joined — the same model, float for float."""

    def __init__(self, pool: FitPool, name: str, params: dict[str, Any], data: Interactions, previous: Any = None,
                 warm: bool = False, verbose: bool = False) -> None:
        self.pool, self.name, self.params = pool, name, params
        whole = _build(name, params, False)
        pieces = [(params, previous)]
        if pool.workers and hasattr(whole, "members"):
            parts = whole.members(pool.workers + 1)
            olds = previous.members(len(parts)) if previous is not None and hasattr(previous, "members") \
                else [previous] * len(parts)
            if len(olds) == len(parts):
                pieces = [(p.get_params(), old) for p, old in zip(parts, olds)]
        self.jobs = [pool.submit(_refit_fit, name, p, data, old, warm, verbose and not pool.workers)
                     for p, old in pieces]

    def result(self) -> tuple[Any, str, float]:
        """(model, how it was made, seconds of fitting, summed over the parts)."""
        done = [self.pool.result(job) for job in self.jobs]
        if len(done) == 1:
            return done[0]
        model = _build(self.name, self.params, False).join([d[0] for d in done])
        return model, done[0][1], sum(d[2] for d in done)

    def cancel(self) -> None:
        for job in self.jobs:
            self.pool.cancel(job)


#: The order jobs are handed out in: the longest fits first, so that the last ones to finish are short.
_LONGEST_FIRST = ("ncf", "multvae", "two_tower", "lightfm", "ease", "itemknn", "rp3beta")


def longest_first(models: list[str]) -> list[str]:
    """``models`` in the order ``FitPool`` jobs are submitted.

    >>> longest_first(["ease", "lightfm", "content", "multvae"])
    ['multvae', 'lightfm', 'ease', 'content']
    """
    rank = {m: i for i, m in enumerate(_LONGEST_FIRST)}
    return sorted(models, key=lambda m: rank.get(m, len(rank)))


# --- one training run ------------------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    promotion: Any = None  # trainer.promotion.PromotionResult when asked to promote
    fit_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. experiment tracking that failed


def train_run(
    source: Source,
    settings: Settings,
    models: list[str],
    params: dict[str, dict[str, Any]] | None = None,
    tag: str | None = None,
    promote: bool = False,
    val_ratio: float | None = None,
    refit: bool = True,
    k: int = 10,
    seed: int = 42,
    verbose: bool = False,
    tune: bool = True,
) -> TrainResult:
    """Train ``models`` on ``source``, choose the policy to serve on validation, save one run.

    With ``tune`` (the default) each model's grid is searched and the blend weights and MMR λ
    are chosen on validation (``trainer.tuning``); the policy's validation figure is
    measured on the lists it would serve (``trainer.policy_eval``)."""
    from trainer.tuning import NOT_BLENDED

    if not models:
        raise ValueError("no model to train: pass at least one --model")
    params = params or {}
    val_ratio = settings.val_ratio if val_ratio is None else val_ratio
    _limit_threads(settings.train_threads)
    data = dataset_from_source(source, settings)
    info = {"source": source.report.source, "dropped": source.report.dropped, **describe(data),
            "filters": Filters.from_settings(settings).__dict__, "val_ratio": val_ratio, "refit": refit}
    # promotion's shared holdout (trainer/holdout.py): with a run serving, the newest events are
    # carved out first, so that nothing the challenger is tuned or measured on has seen them
    from trainer.holdout import data_span

    info.update(data_span(data))  # when this run's data ends: the next challenger's holdout starts there
    champion, holdout, holdout_note = None, None, ""
    if promote:
        from trainer.promotion import carve_for_challenger

        champion, holdout, holdout_note = carve_for_challenger(settings, data)
    tune_on = holdout.before if holdout is not None else data
    fit_seconds: dict[str, float] = {}
    warm = settings.train_profile != "full"
    # fits run side by side on a machine with more than one core (trainer.fit_pool); the scheduler's
    # retrains stay in one process (Settings.scheduler_train_workers)
    workers = worker_count(settings.train_workers, int(data.matrix.nnz))
    if workers:
        log.info("fitting models in %d worker process(es) beside this one", workers)
    with FitPool(workers) as pool:
        refit_jobs: dict[str, Fitting] = {}

        def start_refits(sel: Selection) -> None:  # while the policy is chosen: what each refit starts from is known
            if refit:
                for name in longest_first(list(models)):
                    refit_jobs[name] = Fitting(pool, name, sel.params[name], data, sel.fitted.get(name), warm, verbose)

        sel = select(tune_on, models, params, settings, val_ratio, k, seed, tune, verbose, fit_seconds, pool=pool,
                     on_fitted=start_refits if pool.workers else None)
        validation, fitted, chosen, policy, tuning = sel.validation, sel.fitted, sel.params, sel.policy, sel.tuning
        if refit and not refit_jobs:
            start_refits(sel)

        final: dict[str, Any] = {}
        refits: dict[str, str] = {}
        for name in models:
            if name in fitted and not refit:
                final[name] = fitted[name]
                continue
            final[name], refits[name] = _refit(name, chosen[name], data, fitted.get(name), policy, verbose,
                                               fit_seconds, warm=warm, started=refit_jobs.get(name))
        early: dict[str, Any] = {}
        if holdout is not None:
            # the challenger is measured with models fitted on the data before the holdout (the
            # validation fits themselves when they are what is served, refit=False), then served refitted
            jobs = {n: Fitting(pool, n, chosen[n], holdout.before, verbose=verbose)
                    for n in longest_first(list(models)) if not (n in fitted and not refit)}
            early = {n: fitted[n] if n not in jobs else jobs[n].result()[0] for n in models}
    if policy is None:
        scored_models = [n for n in models if n not in NOT_BLENDED]
        policy = Policy.single(scored_models[0]) if scored_models else Policy.popularity()
    metrics: dict[str, Any] = {
        "primary": settings.promote_metric,
        "split": f"per-user random {1 - val_ratio:.0%}/{val_ratio:.0%} of user-item pairs, full ranking, k={k}",
        "validation": validation,
        "fit_seconds": {n: round(s, 3) for n, s in fit_seconds.items()},
        "policy": policy.name,
    }
    if refits:
        metrics["refit"] = refits
    if workers:  # how the fits were spread (benchmarks/training.py reads the critical path from it)
        metrics["fit_pool"] = {"workers": workers, "workers_cpu_s": round(pool.workers_cpu_s, 2),
                               "waited_cpu_s": round(pool.waited_cpu_s, 2)}
    if tuning:
        metrics["tuning"] = tuning
    metrics["score"] = run_score(metrics, settings.promote_metric)
    scored = {n: v.get(settings.promote_metric) for n, v in validation.items()
              if n != "policy" and v.get(settings.promote_metric) is not None}
    metrics["best_model"] = max(scored, key=scored.get) if scored else models[0]
    comparison = None
    if holdout is not None:
        from trainer.promotion import challenger_comparison

        comparison, holdout_note = challenger_comparison(
            settings, holdout, champion, policy_scorer(early, holdout.before), policy)
    if comparison is not None:
        metrics["holdout"] = comparison.to_dict()
    elif holdout_note:
        metrics["holdout"] = {"note": holdout_note}
    versions = {**package_versions(), "snapshot_offsets": source.offsets, "source": source.report.source}
    run_dir = save_run(new_run_dir(settings.artifact_dir, tag), final, metrics, dataset_info=info, versions=versions,
                       extras=basket_exporter(data, final, metrics["best_model"]), policy=policy)
    log.info("saved %s (policy %s, %s = %s)", run_dir, policy.name, settings.promote_metric, metrics["score"])
    result = TrainResult(run_dir, metrics, fit_seconds=fit_seconds,
                         warnings=list(tuning.get("stopped_early", [])) if tuning else [])
    if promote:
        from trainer.promotion import promote as do_promote

        result.promotion = do_promote(settings, run_dir, comparison=comparison, holdout_note=holdout_note)
    index_note = _refresh_search_index(settings, source)
    if index_note:
        result.warnings.append(index_note)
    from trainer.tracking import log_training_run

    tracking_warning = log_training_run(settings, run_dir, metrics, chosen, result.promotion)
    if tracking_warning:
        result.warnings.append(tracking_warning)
    return result


def _refresh_search_index(settings: Settings, source: Source) -> str | None:
    """Build the search index with the run when the catalogue has texts that the serving index
    does not hold yet (``Settings.search_index_on_train``); a failure is a warning, not a failed run."""
    if not settings.search_index_on_train or source.item_meta is None or not len(source.item_meta):
        return None
    from trainer.text_index import refresh_text_index, texts_from_meta

    try:
        texts = texts_from_meta(source.item_meta)
        if not texts:
            return None
        from trainer.text_models import load_bi_encoder

        out = refresh_text_index(settings.artifact_dir, texts, lambda: load_bi_encoder(settings.hf_offline))
    except Exception as exc:  # noqa: BLE001 - the run is saved; search keeps its last index
        log.warning("search index not rebuilt: %s", exc)
        return f"the search index was not rebuilt: {exc}"
    if out is not None:
        log.info("search index %s: %d items", out.name, len(texts))
    return None


@dataclass
class Selection:
    """What validation chose: each model's params, the policy to serve, and the figures."""

    params: dict[str, dict[str, Any]]
    policy: Policy | None
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitted: dict[str, Any] = field(default_factory=dict)  # the validation fits
    tuning: dict[str, Any] = field(default_factory=dict)  # grid trials per model


def select(data: Interactions, models: list[str], params: dict[str, dict[str, Any]], settings: Settings,
           val_ratio: float, k: int, seed: int, tune: bool = True, verbose: bool = False,
           fit_seconds: dict[str, float] | None = None, pool: FitPool | None = None,
           on_fitted: Callable[[Selection], None] | None = None) -> Selection:
    """Hold out ``val_ratio`` of each user's pairs of ``data``, fit (and with ``tune``, search)
    every model on the rest, and choose the policy on the held-out part (``trainer.tuning``);
    the policy's figures are those of the lists it would serve. ``streamrec train`` and
    ``streamrec eval --policy`` both choose this way.

    ``pool`` fits the models side by side (``trainer.fit_pool``; default: one after the other,
    here); ``on_fitted`` is called with the validation fits before the policy is chosen."""
    from trainer import splits
    from trainer.models import MODELS
    from trainer.tuning import SearchBudget, profile

    fit_seconds = {} if fit_seconds is None else fit_seconds
    defaults, _ = profile(settings.train_profile)
    chosen = {n: ({**defaults.get(n, {}), **params.get(n, {})} if tune else dict(params.get(n, {})))
              for n in models}
    sel = Selection(chosen, None)
    if val_ratio <= 0:
        return sel

    train_pairs, val_pairs = splits.random_split(pairs_frame(data), 1.0 - val_ratio, seed=seed)
    if val_pairs.empty:
        log.warning("validation split is empty (too few interactions per user): no validation figures")
        return sel
    train = restrict(data, train_pairs)
    budget = SearchBudget(settings.tune_budget_s)
    pool = pool or FitPool(0)
    _, grids = profile(settings.train_profile)
    jobs: dict[str, Job | Fitting] = {}
    for name in longest_first(list(models)):
        if pool.workers and not (tune and grids.get(name)) and hasattr(MODELS[name], "members"):
            jobs[name] = Fitting(pool, name, chosen[name], train)  # nothing to search: its parts side by side
        else:
            jobs[name] = pool.submit(_search_one, name, params.get(name, {}), chosen[name], train, val_pairs, k, tune,
                                     (budget.seconds, budget.started), settings.train_profile,
                                     verbose and not pool.workers)
    for name in models:
        job = jobs[name]
        found = pool.result(job) if isinstance(job, Job) else _measured(name, chosen[name], job, train, val_pairs, k)
        chosen[name] = found.params
        if len(found.trials) > 1:
            sel.tuning[name] = found.trials
        fit_seconds[name] = found.seconds
        budget.notes.extend(found.notes)
        sel.validation[name] = found.figures
        log.info("%s: validation %s", name, _short(sel.validation[name], k))
        sel.fitted[name] = found.model
    if on_fitted is not None:
        on_fitted(sel)
    sel.policy, figures = _choose_policy(sel.fitted, train, val_pairs, k, settings, tune, budget)
    sel.validation["policy"] = figures
    if budget.notes:  # never silently cut: metrics.json and the train output say where it stopped
        sel.tuning["stopped_early"] = budget.notes
    log.info("policy %s: validation %s", sel.policy.name, _short(figures, k))
    return sel


@dataclass
class Found:
    """One model's validation search: the chosen params, their fit, its figures."""

    params: dict[str, Any]
    model: Any
    trials: dict[str, float]
    figures: dict[str, Any]
    seconds: float  # the last fit's
    notes: list[str]  # where the search budget cut this model's grid


def _measured(name: str, params: dict[str, Any], fitting: Fitting, train: Interactions, val: pd.DataFrame,
              k: int) -> Found:
    """A model fitted in parts (nothing to search), measured on validation as ``_search_one`` measures."""
    from trainer import evaluation

    model, _, seconds = fitting.result()
    figures = _clean(evaluation.evaluate(model, train, val, k=k, sampled=False))
    log.info("  %s (defaults): validation ndcg@%d=%.4f", name, k, figures[f"ndcg@{k}"])
    return Found(params, model, {"{}": round(figures[f"ndcg@{k}"], 5)}, figures, seconds, [])


def _search_one(name: str, given: dict[str, Any], params: dict[str, Any], train: Interactions, val: pd.DataFrame,
                k: int, tune: bool, budget: tuple[float | None, float], train_profile: str, verbose: bool) -> Found:
    """Search ``name``'s grid on validation (with ``tune``; else fit ``params``) and measure the
    winner. A ``FitPool`` job: ``budget`` is (seconds, start on ``time.monotonic``), the run's search
    budget, whose clock every process of the machine shares."""
    from trainer import evaluation
    from trainer.tuning import SearchBudget, search_params

    seconds: dict[str, float] = {}
    limit = SearchBudget(budget[0], started=budget[1])

    def fit(p: dict[str, Any]):
        return _fit_timed(name, p, train, verbose, seconds)

    if tune:
        params, model, trials = search_params(name, given, fit, train, val, k, limit, train_profile)
    else:
        model, trials = fit(params), {}
    figures = _clean(evaluation.evaluate(model, train, val, k=k, sampled=False))
    return Found(params, model, trials, figures, seconds.get(name, 0.0), limit.notes)


def _choose_policy(fitted: dict[str, Any], train: Interactions, val: pd.DataFrame, k: int, settings: Settings,
                   tune: bool, budget=None) -> tuple[Policy, dict[str, Any]]:  # noqa: ANN001 - a SearchBudget
    """The policy to serve, and its validation figures measured on the lists it would serve."""
    from trainer.policy_eval import RowsCache, evaluate_policy, item_infos
    from trainer.signals import OfflineSignals
    from trainer.tuning import NOT_BLENDED, UNLIMITED, choose_policy

    scorer = policy_scorer(fitted, train)
    signals, infos = OfflineSignals(train), item_infos(train)
    base = Policy(category_cap=settings.category_cap)

    measured: dict[str, dict[str, Any]] = {}  # the chosen policy was measured by the λ search already
    rows = RowsCache()  # the λ search serves the same users with the same models three times: score them once

    def evaluate(p: Policy) -> dict[str, Any]:
        key = json.dumps(p.with_(notes={}).to_dict(), sort_keys=True, default=str)
        if key not in measured:
            measured[key] = _clean(evaluate_policy(scorer, p, train, val, k, signals, infos, rows_cache=rows))
        return measured[key]

    blendable = [n for n in fitted if n not in NOT_BLENDED]
    if tune and blendable:
        users = np.arange(train.n_users)
        full_rows = {n: fitted[n].score_matrix(users) for n in blendable}
        policy, _ = choose_policy(full_rows, train, val, k, lambda p: evaluate(p)[f"ndcg@{k}"], base,
                                  budget or UNLIMITED)
        del full_rows
    elif blendable:
        best = max(blendable, key=lambda n: ranking_ndcg(fitted[n], train, val, k))
        policy = Policy.single(best, category_cap=settings.category_cap)
    else:
        policy = Policy.popularity()
    figures = evaluate(policy)
    if policy.models:  # what the candidate stage keeps of each model's full-ranking top k (README: Policies)
        from trainer.candidates import candidate_recall

        sample = sorted(set(val["user_id"].astype(str)) & set(train.user_index))[:200]
        recall = candidate_recall(scorer, policy, [signals.user(u) for u in sample], k)
        if recall is not None:
            figures[f"candidate_recall@{k}"] = round(recall, 4)
    return policy, figures


def ranking_ndcg(model, train: Interactions, val: pd.DataFrame, k: int) -> float:
    from trainer.evaluation import ranking_metrics

    return float(ranking_metrics(model, train, val, k)[f"ndcg@{k}"])


def policy_scorer(models: dict[str, Any], data: Interactions):
    """The candidate stage over models fitted on ``data`` (in memory, before they are saved)."""
    from trainer.base import normalize_rows
    from trainer.candidates import PolicyScorer

    embeddings = {}
    for name, model in models.items():
        emb = model.item_embeddings()
        if emb is not None:
            embeddings[name] = normalize_rows(emb)
    return PolicyScorer(models, [str(i) for i in data.item_ids], embeddings)


def basket_exporter(data: Interactions, models: dict[str, Any], best: str):
    """When the events carry basket ids, a ``save_run`` hook writing the run's basket
    artefacts (``trainer.basket_export``): pairs mined from the baskets and segment centroids
    over the best model's item embeddings. None when there are no baskets."""
    ev = data.events
    if "basket_id" not in ev or not ev["basket_id"].notna().any():
        return None
    order = [best] + [n for n in models if n != best]
    embeddings = next((e for e in (models[n].item_embeddings() for n in order) if e is not None), None)
    frame = ev[ev["basket_id"].notna()].copy()
    segment = frame["profession"] if "profession" in frame else pd.Series(pd.NA, index=frame.index, dtype=object)
    if data.user_meta is not None and "segment" in data.user_meta:
        by_user = data.user_meta["segment"]
        by_user = by_user[~by_user.index.duplicated(keep="last")]
        segment = segment.fillna(frame["user_id"].map(by_user))
    if "segment" in frame:
        segment = frame["segment"].fillna(segment)
    frame["segment"] = segment

    def export(run_dir: Path) -> None:
        from trainer.basket_export import export_basket

        try:
            export_basket(run_dir, frame, [str(i) for i in data.item_ids], embeddings)
        except Exception as exc:  # noqa: BLE001 - the run still serves recommendations without them
            log.warning("basket artefacts not written: %s", exc)

    return export


# --- comparison on one split --------------------------------------------------------------------
def evaluate_split(
    source: Source,
    settings: Settings,
    models: list[str],
    params: dict[str, dict[str, Any]] | None = None,
    split: str = "random",
    k: int = 10,
    seed: int = 42,
    sampled: bool = True,
    verbose: bool = False,
    policy: bool = False,
    val_ratio: float | None = None,
) -> pd.DataFrame:
    """Fit every model on the train part of ``split`` and evaluate it on the test part;
    one row of metrics per model (plus ``fit_s``).

    With ``policy``, the models are chosen the way ``streamrec train`` chooses them (grids,
    blend weights and λ on validation carved from the train part, ``select``), refitted on the
    train part, and a ``policy (NAME)`` row gives the served lists' figures on the test part."""
    from trainer import evaluation
    from trainer.policy_eval import evaluate_policy

    params = params or {}
    _limit_threads(settings.train_threads)
    data = dataset_from_source(source, settings)
    train_pairs, test_pairs = split_pairs(pairs_frame(data), split, seed=seed)
    if test_pairs.empty:
        raise InvalidDataset(f"the {split} split left no test interactions (too few per user)")
    train = restrict(data, train_pairs)
    val_ratio = settings.val_ratio if val_ratio is None else val_ratio
    sel = select(train, models, params, settings, val_ratio, k, seed, tune=True, verbose=verbose) if policy else None
    chosen = sel.params if sel is not None else params
    rows, fitted, seconds = {}, {}, {}
    for name in models:
        fitted[name] = model = _fit_timed(name, chosen.get(name, {}), train, verbose, seconds)
        row = _clean(evaluation.evaluate(model, train, test_pairs, k=k, sampled=sampled, seed=seed))
        row["fit_s"] = round(seconds[name], 3)
        rows[name] = row
        log.info("%s on %s: %s (fit %.1f s)", name, split, _short(row, k), seconds[name])
    if sel is not None and sel.policy is not None:
        row = _clean(evaluate_policy(policy_scorer(fitted, train), sel.policy, train, test_pairs, k))
        rows[f"policy ({sel.policy.name})"] = {**row, "fit_s": round(sum(seconds.values()), 3)}
        log.info("policy %s on %s: %s %s", sel.policy.name, split, _short(row, k), sel.policy.weights)
    return pd.DataFrame.from_dict(rows, orient="index")


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, v in metrics.items():
        if isinstance(v, (np.floating, float)):
            out[key] = float(v)
        elif isinstance(v, (np.integer, int)):
            out[key] = int(v)
        else:
            out[key] = v
    return out


def _short(m: dict[str, Any], k: int) -> str:
    return " ".join(f"{key}={m[key]:.4f}" for key in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}") if key in m)
