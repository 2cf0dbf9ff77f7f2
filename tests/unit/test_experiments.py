"""Assignment (ranking/experiments.py): shares, stickiness, fewest moves, namespaces, documents;
the report (trainer/experiment_report.py) on counters of known values."""
from __future__ import annotations

import math

import pytest

from ranking.experiments import Experiment, assign, assign_any, check, check_namespaces, moved, reshare

USERS = [f"user-{i}" for i in range(100_000)]


def _shares(exp: Experiment) -> dict[str, float]:
    counts: dict[str, int] = {}
    for u in USERS:
        arm = assign(exp, u)
        counts[arm.name] = counts.get(arm.name, 0) + 1
    return {k: v / len(USERS) for k, v in counts.items()}


def test_shares_within_one_percent_over_100k_users():
    exp = Experiment.create("shares", {"control": 0.5, "b": 0.3, "c": 0.2})
    got = _shares(exp)
    for arm, share in {"control": 0.5, "b": 0.3, "c": 0.2}.items():
        assert abs(got[arm] - share) <= 0.01, (arm, got)


def test_reshared_shares_hold_and_only_the_least_users_move():
    before = Experiment.create("move", {"a": 0.5, "b": 0.3, "c": 0.2})
    after = reshare(before, {"a": 0.2, "b": 0.3, "c": 0.5})
    assert math.isclose(moved(before, after), 0.3, abs_tol=1e-9)
    changed = sum(assign(before, u).name != assign(after, u).name for u in USERS) / len(USERS)
    assert abs(changed - 0.3) <= 0.01
    got = _shares(after)
    assert abs(got["c"] - 0.5) <= 0.01 and abs(got["a"] - 0.2) <= 0.01
    # users who stayed in b never moved
    assert all(assign(after, u).name == "b" for u in USERS[:5000] if assign(before, u).name == "b")


def test_sticky_and_salt_dependent():
    a = Experiment.create("x", {"c": 0.5, "t": 0.5}, salt="one")
    b = Experiment.create("x", {"c": 0.5, "t": 0.5}, salt="two")
    arms_a = [assign(a, u).name for u in USERS[:2000]]
    assert arms_a == [assign(a, u).name for u in USERS[:2000]]
    assert arms_a != [assign(b, u).name for u in USERS[:2000]]  # another salt, another split


def test_namespaces_keep_experiments_exclusive():
    one = Experiment.create("one", {"c": 0.5, "t": 0.5}, namespace="home", traffic=(0.0, 0.4))
    two = Experiment.create("two", {"c": 0.5, "t": 0.5}, namespace="home", traffic=(0.4, 1.0))
    check_namespaces([one, two])
    both = sum(assign(one, u) is not None and assign(two, u) is not None for u in USERS[:20000])
    assert both == 0
    in_one = sum(assign(one, u) is not None for u in USERS) / len(USERS)
    assert abs(in_one - 0.4) <= 0.01
    assert assign_any([one, two], "user-1")[0].name in {"one", "two"}
    with pytest.raises(ValueError, match="overlap"):
        check_namespaces([one, Experiment.create("three", {"c": 0.5, "t": 0.5}, namespace="home", traffic=(0.3, 0.5))])


def test_audience_and_schedule():
    exp = Experiment.create("aud", {"c": 0.5, "t": 0.5}, audience=frozenset({"nurse"}), start=100.0, stop=200.0)
    assert assign(exp, "u", segment="doctor", now=150) is None
    assert assign(exp, "u", segment="nurse", now=150) is not None
    assert assign(exp, "u", segment="nurse", now=250) is None


def test_documents_round_trip_and_are_checked():
    exp = Experiment.create("doc", {"c": 0.25, "t": 0.75}, policies={"t": {"strategy": "ease", "run": "run_x",
                                                                          "params": {"mmr_lambda": 0.8}}},
                            namespace="n", traffic=(0.1, 0.9), kind="canary")
    back = Experiment.from_dict(exp.to_dict())
    assert back == exp and back.arm("t").params == {"mmr_lambda": 0.8}
    assert exp.label("t") == "doc.t"
    assert exp.arm("t").policy_tag != Experiment.create("doc", {"c": 0.25, "t": 0.75}).arm("t").policy_tag
    with pytest.raises(ValueError, match="two arms"):
        check(Experiment.create("one-arm", {"c": 1.0}))
    with pytest.raises(ValueError, match="kind"):
        check(Experiment.create("k", {"c": 0.5, "t": 0.5}, kind="weird"))
    with pytest.raises(ValueError, match="add up to 1"):
        Experiment.from_dict({**exp.to_dict(), "arms": [{**a, "segments": [[0, 0.1]]} for a in exp.to_dict()["arms"]]})


def _day(**counts) -> dict:
    return {f"r.{k.replace('__', ':')}": v for k, v in counts.items()}


def test_report_known_values_and_sequential_looks():
    from trainer.experiment_report import report

    exp = Experiment.create("r", {"control": 0.5, "treatment": 0.5})
    doc = {**exp.to_dict(), "status": "running"}
    days = [("d1", _day(control__impressions=10000, control__clicks=500, treatment__impressions=10000,
                        treatment__clicks=500, control__lists=1000)),
            ("d2", _day(control__impressions=10000, control__clicks=500, treatment__impressions=10000,
                        treatment__clicks=900))]
    rep = report(doc, days, users={"r.control": 7})
    ctl, trt = rep["arms"]
    assert rep["looks"] == 2 and rep["control"] == "control"
    assert ctl["exposure"] == {"users": 7, "lists": 1000, "impressions": 20000}
    assert trt["metrics"]["ctr"]["value"] == pytest.approx(0.07)
    lo, hi = trt["metrics"]["ctr"]["ci95"]
    assert lo < 0.07 < hi
    vs = trt["vs_control"]["ctr"]
    assert vs["lift"] == pytest.approx(0.4) and vs["significant"] and vs["looks"] == 2
    assert vs["lift_ci"][0] > 0
    assert trt["vs_control"]["rating_mean"] is None  # no ratings: no comparison
    assert ctl["vs_control"] == {}


def test_report_aa_is_not_significant():
    from trainer.experiment_report import report

    exp = Experiment.create("r", {"control": 0.5, "treatment": 0.5})
    days = [(f"d{i}", _day(control__impressions=5000, control__clicks=250 + (i % 3), treatment__impressions=5000,
                           treatment__clicks=250 - (i % 2))) for i in range(10)]
    vs = report({**exp.to_dict(), "status": "running"}, days)["arms"][1]["vs_control"]["ctr"]
    assert not vs["significant"] and vs["ci"][0] < 0 < vs["ci"][1]


def _canary_report(champ_clicks: int, chall_clicks: int, n: int = 4000) -> dict:
    from trainer.experiment_report import report

    exp = Experiment.create("c", {"champion": 0.7, "challenger": 0.3}, kind="canary")
    day = {"c.champion:impressions": n, "c.champion:clicks": champ_clicks,
           "c.challenger:impressions": n, "c.challenger:clicks": chall_clicks}
    return report({**exp.to_dict(), "status": "running"}, [("d1", day)])


@pytest.mark.parametrize("champ, chall, new, last, action", [
    (800, 120, 4000, False, "fail"),      # CTR 20% -> 3%: surely more than 5% worse
    (400, 800, 4000, False, "widen"),     # better, enough new impressions
    (400, 800, 100, False, "wait"),       # better, too few impressions since the last step
    (400, 800, 4000, True, "promote"),    # last step, surely within 5%
    (400, 392, 4000, True, "wait"),       # last step, not yet sure it is within 5%
    (400, 392, 4000, False, "widen"),     # nothing fails: widen
])
def test_canary_verdicts(champ, chall, new, last, action):
    from trainer.canary import judge

    v = judge(_canary_report(champ, chall), margin=0.05, min_impressions=1000, new_impressions=new, last_step=last)
    assert v.action == action, v.reason
    if action == "fail":
        assert v.metric == "ctr" and v.figures["ctr"]["lift_ci"][1] < -0.05
