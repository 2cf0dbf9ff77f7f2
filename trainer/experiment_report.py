"""An experiment's report: per arm exposure, CTR, conversion, positive-feedback rate and mean
rating, each against the control with an always-valid interval and p-value (the mSPRT of
``trainer.experiment_analysis``).

``report`` is pure: it takes the experiment's stored document and the day hashes of the feedback
counters (``Keys.stats_day``; the stream keeps an arm's counters under ``{experiment}.{arm}:…``)
and returns a JSON-ready dict. Reading those hashes is the caller's (``read_days`` here for the
CLI and the monitor, ``inference/routes/experiments.py`` for the API).

Every day is one look of the sequential test (cumulative figures from the first day to that
day): the p-value never rises and the intervals only shrink, so the report can be read at any
time, as often as wanted, without inflating the error rate. Per arm, a metric's own interval is
a Wilson 95% interval (rates) or a normal one (the rating mean): a description of the arm, not a
test. τ, the prior scale of the effect, is fixed per metric before the data (``TAU``; an
experiment document may set its own under ``"tau"``).
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from ranking.experiments import Experiment
from trainer.experiment_analysis import Look, compare

#: (metric, numerator counter, denominator counter, kind)
METRICS = (
    ("ctr", "clicks", "impressions", "rate"),
    ("conversion_rate", "conversions", "impressions", "rate"),
    ("positive_rate", "positive", "impressions", "rate"),
    ("rating_mean", "rating_sum", "rating_count", "mean"),
)
#: the mSPRT's prior scale per metric: about the size of effect worth detecting
TAU = {"ctr": 0.005, "conversion_rate": 0.002, "positive_rate": 0.005, "rating_mean": 0.1}
MAX_DAYS = 90


def experiment_days(doc: dict[str, Any], now: float) -> list[str]:
    """The UTC days from the experiment's start to its stop (or now), at most ``MAX_DAYS``, oldest first.

    >>> experiment_days({"start": 0.0, "stop": 86400.0 * 2}, now=1e9)
    ['1970-01-01', '1970-01-02', '1970-01-03']
    """
    start = next((x for x in (doc.get("start"), doc.get("created_at")) if x is not None), now)
    end = min(now, doc["stop"]) if doc.get("stop") is not None else now
    first = datetime.fromtimestamp(start, tz=timezone.utc).date()
    last = datetime.fromtimestamp(max(end, start), tz=timezone.utc).date()
    n = min((last - first).days + 1, MAX_DAYS)
    return [(last - timedelta(days=i)).isoformat() for i in range(n)][::-1]


def arm_counters(raw: dict, exp: Experiment) -> dict[str, Counter]:
    """One day hash's counters of the experiment's arms, by arm name.

    >>> e = Experiment.create("x", {"a": 0.5, "b": 0.5})
    >>> arm_counters({b"x.a:clicks": b"3", "x.b:impressions": "10", "other:clicks": "9"}, e)
    {'a': Counter({'clicks': 3.0}), 'b': Counter({'impressions': 10.0})}
    """
    labels = {exp.label(a.name): a.name for a in exp.arms}
    out: dict[str, Counter] = {a.name: Counter() for a in exp.arms}
    for f, v in (raw or {}).items():
        name = f.decode() if isinstance(f, bytes) else f
        label, _, counter = name.rpartition(":")
        if label in labels:
            try:
                out[labels[label]][counter] += float(v)
            except (TypeError, ValueError):
                continue
    return out


def _look(c: Counter, num: str, den: str, kind: str) -> Look:
    return Look(c[num], c[den], c["rating_sq"] if kind == "mean" else None)


def _rate_ci(k: float, n: float, z: float = 1.959964) -> list[float] | None:
    """Wilson interval of a proportion (None without trials)."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)]


def _mean_ci(look: Look, z: float = 1.959964) -> list[float] | None:
    if look.n <= 1:
        return None
    m, v = look.mean(), look.variance_of_mean("mean")
    return [round(m - z * math.sqrt(v), 6), round(m + z * math.sqrt(v), 6)]


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def report(doc: dict[str, Any], days: Iterable[tuple[str, dict]], users: dict[str, int] | None = None,
           lists: dict[str, int] | None = None, alpha: float = 0.05,
           shadow: tuple[dict, list] | None = None, cuped: dict[str, list] | None = None) -> dict[str, Any]:
    """The report of one experiment from its document and its days' counter hashes (oldest first);
    ``shadow``: (``Keys.shadow_stats`` hash, ``Keys.shadow_log`` records) of a shadow experiment;
    ``cuped``: arm -> per-user (y, x) values (``read_cuped``) to add the CUPED comparison.

    >>> e = Experiment.create("x", {"control": 0.5, "treatment": 0.5})
    >>> day = {"x.control:impressions": 20000, "x.control:clicks": 1000,
    ...        "x.treatment:impressions": 20000, "x.treatment:clicks": 1300}
    >>> r = report({**e.to_dict(), "status": "running"}, [("2026-01-01", day)])
    >>> t = r["arms"][1]
    >>> t["metrics"]["ctr"]["value"], round(t["vs_control"]["ctr"]["lift"], 2), t["vs_control"]["ctr"]["significant"]
    (0.065, 0.3, True)
    """
    exp = Experiment.from_dict(doc)
    tau = {**TAU, **(doc.get("tau") or {})}
    cumulative = {a.name: Counter() for a in exp.arms}
    looks: list[dict[str, Counter]] = []
    day_names = []
    for day, raw in days:
        for arm, c in arm_counters(raw, exp).items():
            cumulative[arm].update(c)
        looks.append({arm: Counter(c) for arm, c in cumulative.items()})
        day_names.append(day)
    control = exp.control.name
    arms_out = []
    for arm in exp.arms:
        c = cumulative[arm.name]
        metrics, versus = {}, {}
        for metric, num, den, kind in METRICS:
            last = _look(c, num, den, kind)
            metrics[metric] = {
                "value": _r(last.mean()) if last.n else None, "numerator": c[num], "denominator": c[den],
                "ci95": _rate_ci(c[num], c[den]) if kind == "rate" else _mean_ci(last),
            }
            if arm.name == control:
                continue
            pairs = [(_look(lk[control], num, den, kind), _look(lk[arm.name], num, den, kind)) for lk in looks]
            pairs = [(a, b) for a, b in pairs if a.n > 1 and b.n > 1]
            if not pairs:
                versus[metric] = None
                continue
            cmp = compare(pairs, kind, tau=tau[metric], alpha=alpha)
            versus[metric] = {
                "diff": _r(cmp.diff), "ci": [_r(cmp.ci[0]), _r(cmp.ci[1])], "lift": _r(cmp.lift),
                "lift_ci": None if cmp.lift_ci is None else [_r(cmp.lift_ci[0]), _r(cmp.lift_ci[1])],
                "p_value": _r(cmp.p_value), "significant": cmp.significant, "looks": cmp.looks,
                "verdict": ("better" if cmp.ci[0] > 0 else "worse") if cmp.significant else "no difference yet",
            }
        label = exp.label(arm.name)
        arms_out.append({
            "name": arm.name, "label": label, "control": arm.name == control, "share": round(arm.share, 6),
            "strategy": arm.strategy, "run": arm.run, "params": dict(arm.params),
            "exposure": {"users": (users or {}).get(label), "lists": int(c["lists"]) or (lists or {}).get(label, 0),
                         "impressions": int(c["impressions"])},
            "metrics": metrics, "vs_control": versus,
        })
    out = {
        "name": exp.name, "kind": exp.kind, "status": doc.get("status"), "description": doc.get("description", ""),
        "namespace": exp.namespace, "traffic": list(exp.traffic),
        "audience": None if exp.audience is None else sorted(exp.audience),
        "start": exp.start, "stop": exp.stop, "created_at": doc.get("created_at"),
        "control": control, "shares": exp.shares, "alpha": alpha, "tau": tau,
        "days": day_names, "looks": len(day_names), "arms": arms_out,
        "history": doc.get("history", []),
        "statistics": "always-valid mSPRT (docs/experiments.md): vs_control intervals and p-values hold at "
                      "any look; ci95 per arm is a fixed-horizon description",
    }
    if exp.kind == "interleaving":
        out["interleaving"] = interleaving_summary(exp, cumulative, alpha)
    if exp.kind == "shadow":
        out["shadow"] = shadow_summary(*(shadow or ({}, [])))
    if cuped is not None:
        out["cuped"] = cuped_section(exp, cuped, alpha)
    return out


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(math.ceil(q * len(xs))) - 1)], 3)


def shadow_summary(stats: dict, recent: list) -> dict[str, Any]:
    """A shadow experiment's figures: how far the shadow arm's lists agree with the served ones
    (overlap@k and rank-biased overlap, means over all sampled requests) and its latency beside the
    served list's (means over all; percentiles over the newest records kept).

    >>> r = shadow_summary({"n": "2", "overlap_sum": "1.5", "rbo_sum": "1.2", "shadow_ms_sum": "30",
    ...                     "served_ms_sum": "10"}, [{"shadow_ms": 10, "served_ms": 4}, {"shadow_ms": 20, "served_ms": 6}])
    >>> r["requests"], r["overlap_at_k"], r["shadow_ms"]["mean"], r["shadow_ms"]["p99"], r["served_ms"]["p50"]
    (2, 0.75, 15.0, 20.0, 4.0)
    """
    import json

    plain = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (stats or {}).items()}

    def num(key: str) -> float:
        try:
            return float(plain.get(key) or 0)
        except (TypeError, ValueError):
            return 0.0

    recs = []
    for r in recent or ():
        if isinstance(r, (bytes, str)):
            try:
                r = json.loads(r)
            except ValueError:
                continue
        if isinstance(r, dict):
            recs.append(r)
    n = int(num("n"))

    def lat(field: str, total: str) -> dict[str, Any]:
        xs = [float(r[field]) for r in recs if isinstance(r.get(field), (int, float))]
        return {"mean": _r(num(total) / n, 3) if n else None, "p50": _pct(xs, 0.5), "p95": _pct(xs, 0.95),
                "p99": _pct(xs, 0.99)}

    return {
        "requests": n, "dropped": int(num("dropped")),
        "overlap_at_k": _r(num("overlap_sum") / n) if n else None,
        "rank_biased_overlap": _r(num("rbo_sum") / n) if n else None,
        "shadow_ms": lat("shadow_ms", "shadow_ms_sum"), "served_ms": lat("served_ms", "served_ms_sum"),
        "recent": recs[:5],
        "note": "sampled: requests of the shadow arm's users whose served list was computed, not cached; "
                "percentiles over the newest records kept",
    }


def interleaving_summary(exp: Experiment, counters: dict[str, Counter], alpha: float) -> dict[str, Any]:
    """Team-draft outcome: each click goes to the arm that drafted the clicked item (its impression
    carries the team's label); the first arm's share of the credited clicks, its Wilson interval and
    the sign test against 1/2 (``trainer.interleaving_analysis``). The unit is the click, not the list:
    clicks of one list are not independent, so with many multi-click lists the p-value is optimistic.

    >>> e = Experiment.create("i", {"a": 0.5, "b": 0.5}, kind="interleaving")
    >>> r = interleaving_summary(e, {"a": Counter(clicks=70), "b": Counter(clicks=40)}, 0.05)
    >>> round(r["win_rate"], 3), r["winner"], r["significant"]
    (0.636, 'a', True)
    """
    from trainer.interleaving_analysis import analyse

    a, b = exp.arms
    ca, cb = int(counters[a.name]["clicks"]), int(counters[b.name]["clicks"])
    res = analyse(ca, cb, 0, alpha)
    return {"team_a": a.name, "team_b": b.name, "clicks": {a.name: ca, b.name: cb},
            "impressions": {a.name: int(counters[a.name]["impressions"]), b.name: int(counters[b.name]["impressions"])},
            "win_rate": _r(res.win_rate), "ci": [_r(res.ci[0]), _r(res.ci[1])], "p_value": _r(res.p_value),
            "significant": res.significant, "winner": {"A": a.name, "B": b.name}.get(res.winner or ""),
            "unit": "click", "test": "sign test (exact binomial) of the first arm's share of credited clicks vs 1/2"}


def read_days(client, keys, doc: dict[str, Any], now: float) -> tuple[list[tuple[str, dict]], dict[str, int]]:  # noqa: ANN001
    """(day hashes, users per arm label) of an experiment from Redis (a sync redis-py client)."""
    exp = Experiment.from_dict(doc)
    day_list = experiment_days(doc, now)
    labels = [exp.label(a.name) for a in exp.arms]
    pipe = client.pipeline()
    for d in day_list:
        pipe.hgetall(keys.stats_day(d))
    for label in labels:
        pipe.pfcount(keys.experiment_users(label))
    got = pipe.execute()
    days = list(zip(day_list, got[: len(day_list)]))
    return days, dict(zip(labels, (int(x) for x in got[len(day_list):])))


# --- CUPED: per-user clicks, adjusted by each user's clicks before the experiment -------------------
PRE_DAYS = 14  # the covariate's window: the days just before the start
CUPED_SAMPLE = 5000  # users per arm read for CUPED (a random sample of the arm's exposed users)


def pre_days(doc: dict[str, Any], n: int = PRE_DAYS) -> list[str]:
    """The ``n`` UTC days before the experiment's first day.

    >>> pre_days({"start": 86400.0 * 3}, 2)
    ['1970-01-02', '1970-01-03']
    """
    first = datetime.fromtimestamp(doc.get("start") or doc.get("created_at") or 0, tz=timezone.utc).date()
    return [(first - timedelta(days=i)).isoformat() for i in range(n, 0, -1)]


def user_values(raw: dict, label: str, during: list[str], before: list[str], counter: str = "clicks") -> tuple[float, float]:
    """(y, x) of one user from their ``Keys.user_stats`` hash (``{day}:{arm}:{counter}`` fields):
    y = the counter under the arm's label on the experiment's days, x = the counter under any arm
    on the days before it.

    >>> raw = {"2026-01-05:e.b:clicks": "2", "2026-01-01:hybrid:clicks": "3", "2026-01-02:e.b:clicks": "1"}
    >>> user_values(raw, "e.b", ["2026-01-05"], ["2026-01-01", "2026-01-02"])
    (2.0, 4.0)
    """
    during_set, before_set = set(during), set(before)
    y = x = 0.0
    for f, v in (raw or {}).items():
        name = f.decode() if isinstance(f, bytes) else f
        day, _, rest = name.partition(":")
        arm, _, c = rest.rpartition(":")
        if c != counter:
            continue
        try:
            val = float(v)
        except (TypeError, ValueError):
            continue
        if day in during_set and arm == label:
            y += val
        elif day in before_set:
            x += val
    return y, x


def cuped_section(exp: Experiment, values: dict[str, list[tuple[float, float]]], alpha: float) -> dict[str, Any]:
    """Per treatment arm: clicks per exposed user against the control, raw and CUPED-adjusted by
    the users' clicks before the start (``trainer.experiment_analysis.cuped_compare``, a
    fixed-horizon test: read it once, at the planned end). ``values``: arm -> [(y, x)] per user."""
    from trainer.experiment_analysis import cuped_compare

    control = exp.control.name
    out: dict[str, Any] = {"metric": "clicks per exposed user", "covariate": f"clicks in the {PRE_DAYS} days before the start",
                           "users": {a: len(v) for a, v in values.items()}, "arms": {}}
    ctl = values.get(control, [])
    for arm in exp.arms[1:]:
        trt = values.get(arm.name, [])
        if len(ctl) < 2 or len(trt) < 2:
            out["arms"][arm.name] = None
            continue
        r = cuped_compare([y for y, _ in ctl], [x for _, x in ctl], [y for y, _ in trt], [x for _, x in trt], alpha)
        out["arms"][arm.name] = {k: ([_r(x) for x in v] if isinstance(v, tuple) else _r(v)) for k, v in r.to_dict().items()}
    return out


def read_cuped(client, keys, doc: dict[str, Any], now: float, sample: int = CUPED_SAMPLE) -> dict[str, list]:  # noqa: ANN001
    """arm -> [(y, x)] for a random sample of each arm's exposed users (a sync redis-py client)."""
    exp = Experiment.from_dict(doc)
    during, before = experiment_days(doc, now), pre_days(doc)
    out = {}
    for arm in exp.arms:
        label = exp.label(arm.name)
        users = client.srandmember(keys.experiment_members(label), sample) or []
        pipe = client.pipeline()
        for u in users:
            pipe.hgetall(keys.user_stats(u.decode() if isinstance(u, bytes) else u))
        out[arm.name] = [user_values(raw, label, during, before) for raw in pipe.execute()] if users else []
    return out


def read_shadow(client, keys, name: str) -> tuple[dict, list]:  # noqa: ANN001
    """(stats hash, newest records) of a shadow experiment (a sync redis-py client)."""
    pipe = client.pipeline()
    pipe.hgetall(keys.shadow_stats(name))
    pipe.lrange(keys.shadow_log(name), 0, -1)
    stats, recent = pipe.execute()
    return stats, recent


def describe(rep: dict[str, Any]) -> str:
    """The report as lines of text (``streamrec experiment report``)."""
    lines = [f"experiment {rep['name']} ({rep['kind']}, {rep['status']}), {rep['looks']} day(s), "
             f"control {rep['control']}, α {rep['alpha']}"]
    for arm in rep["arms"]:
        e = arm["exposure"]
        lines.append(f"  {arm['name']:<12} share {arm['share']:.2f}  users {e['users'] or 0}  "
                     f"lists {e['lists']}  impressions {e['impressions']}")
        for metric, *_ in METRICS:
            m = arm["metrics"][metric]
            val = "n/a" if m["value"] is None else f"{m['value']:.4f}"
            ci = "" if not m["ci95"] else f" [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]"
            vs = arm["vs_control"].get(metric)
            cmp = ""
            if vs and vs["lift"] is not None and vs["lift_ci"]:
                lo, hi = vs["lift_ci"]
                cmp = (f"  lift {vs['lift']:+.1%} [{lo:+.1%}, {hi:+.1%}] p={vs['p_value']:.3g} {vs['verdict']}"
                       if math.isfinite(lo) and math.isfinite(hi) else f"  lift {vs['lift']:+.1%} (too few data)")
            lines.append(f"    {metric:<16} {val}{ci}{cmp}")
    il = rep.get("interleaving")
    if il:
        rate = "n/a" if il["win_rate"] is None else f"{il['win_rate']:.3f} [{il['ci'][0]:.3f}, {il['ci'][1]:.3f}]"
        lines.append(f"  interleaving: {il['team_a']} won {rate} of credited clicks ({il['clicks']}), "
                     f"p={il['p_value']:.3g}, winner {il['winner'] or 'none yet'}")
    cu = rep.get("cuped")
    if cu:
        for arm, r in cu["arms"].items():
            if r is None:
                lines.append(f"  cuped {arm}: too few users")
                continue
            lines.append(f"  cuped {arm} ({cu['metric']}, users {cu['users']}): diff {r['diff']:+.4f} "
                         f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] p={r['p_value']:.3g}; raw {r['diff_raw']:+.4f} "
                         f"[{r['ci_raw'][0]:+.4f}, {r['ci_raw'][1]:+.4f}]; variance -{r['variance_reduction']:.0%}")
    sh = rep.get("shadow")
    if sh:
        lines.append(f"  shadow: {sh['requests']} sampled requests ({sh['dropped']} dropped), overlap@k "
                     f"{sh['overlap_at_k']}, rank-biased overlap {sh['rank_biased_overlap']}; latency ms "
                     f"shadow {sh['shadow_ms']}, served {sh['served_ms']}")
    return "\n".join(lines)
