"""Experiment assignment: which arm (a policy) a user sees. Pure: plain values in, an arm out.

Deterministic and sticky: a user's point in [0, 1) is a hash of the experiment's salt and the
user id, and each arm owns segments of [0, 1) whose lengths are its share. Changing the shares
(``reshare``) keeps every segment that can stay and moves only the mass that must move:
half the sum of the absolute share changes, the least any assignment can move.

Experiments in one **namespace** are mutually exclusive: the namespace hashes the user to a
second point, and each experiment of the namespace owns a slice (``traffic``) of it; slices of
one namespace may not overlap. An **audience** limits an experiment to users of some segments.

>>> exp = Experiment.create("ranker", {"control": 0.5, "treatment": 0.5}, salt="s1")
>>> assign(exp, "user-1").name in {"control", "treatment"}
True
>>> assign(exp, "user-1") == assign(exp, "user-1")  # sticky
True
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

Segments = tuple[tuple[float, float], ...]
EPS = 1e-12
#: experiment and arm names: no '.' (the arm label joins them with it) nor ':' (counter fields)
NAME_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
KINDS = ("ab", "canary", "interleaving", "shadow")


def unit_point(salt: str, user_id: str) -> float:
    """The user's point in [0, 1) for ``salt`` (SHA-256: stable across processes and versions).

    >>> unit_point("s", "u") == unit_point("s", "u") and 0 <= unit_point("s", "u") < 1
    True
    """
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


@dataclass(frozen=True)
class Arm:
    """One arm: a policy to serve (a strategy name, optionally a run and parameters) and where it sits."""

    name: str
    segments: Segments
    strategy: str = "policy"
    run: str | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def share(self) -> float:
        return sum(hi - lo for lo, hi in self.segments)

    def holds(self, point: float) -> bool:
        for lo, hi in self.segments:  # a plain loop: this runs on every home request
            if lo <= point < hi:
                return True
        return False

    @property
    def policy_tag(self) -> str:
        """A short hash of what the arm serves (strategy, run, params): part of its cache key, so
        a list cached for an older definition of the arm is never served for a new one."""
        doc = json.dumps([self.strategy, self.run, self.params], sort_keys=True, default=str)
        return hashlib.sha256(doc.encode()).hexdigest()[:8]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "share": round(self.share, 12), "segments": [list(s) for s in self.segments],
                "strategy": self.strategy, "run": self.run, "params": dict(self.params)}


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    salt: str
    namespace: str = "default"
    traffic: tuple[float, float] = (0.0, 1.0)  # this experiment's slice of the namespace's users
    audience: frozenset[str] | None = None  # user segments it applies to; None: everyone
    start: float | None = None  # epoch seconds; None: now
    stop: float | None = None

    kind: str = "ab"  # ab, canary (champion vs challenger run), interleaving (two arms merged per list),
    # shadow (the first arm serves; for the second arm's share of users the API also computes its list, unseen)

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def label(self, arm: str) -> str:
        """The name the arm's impressions and feedback counters are kept under.

        >>> Experiment.create("ranker", {"control": 1.0}).label("control")
        'ranker.control'
        """
        return f"{self.name}.{arm}"

    @property
    def shares(self) -> dict[str, float]:
        return {a.name: round(a.share, 12) for a in self.arms}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document; ``from_dict`` reads it back (what Redis and the artifact dir keep).

        >>> e = Experiment.create("e", {"a": 0.3, "b": 0.7}, policies={"b": {"strategy": "ease"}}, audience=frozenset({"x"}))
        >>> Experiment.from_dict(e.to_dict()) == e
        True
        """
        return {"name": self.name, "kind": self.kind, "salt": self.salt, "namespace": self.namespace,
                "traffic": list(self.traffic), "audience": None if self.audience is None else sorted(self.audience),
                "start": self.start, "stop": self.stop, "arms": [a.to_dict() for a in self.arms]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Experiment":
        """Read (and check) a stored document; ``ValueError`` says what is wrong."""
        arms = []
        for a in doc["arms"]:
            segs = tuple((float(lo), float(hi)) for lo, hi in a.get("segments", ()))
            arms.append(Arm(str(a["name"]), segs, strategy=str(a.get("strategy") or "policy"), run=a.get("run"),
                            params=dict(a.get("params") or {})))
        aud = doc.get("audience")
        exp = cls(str(doc["name"]), tuple(arms), str(doc.get("salt") or doc["name"]),
                  namespace=str(doc.get("namespace") or "default"),
                  traffic=tuple(float(x) for x in doc.get("traffic") or (0.0, 1.0)),  # type: ignore[arg-type]
                  audience=None if aud is None else frozenset(str(x) for x in aud),
                  start=doc.get("start"), stop=doc.get("stop"), kind=str(doc.get("kind") or "ab"))
        check(exp)
        return exp

    @classmethod
    def create(cls, name: str, shares: dict[str, float], salt: str | None = None,
               policies: dict[str, dict[str, Any]] | None = None, **kw: Any) -> "Experiment":
        """Arms laid end to end in the order given (the first is the control)."""
        check_shares(shares)
        arms, at = [], 0.0
        for arm, share in shares.items():
            spec = (policies or {}).get(arm, {})
            arms.append(Arm(arm, ((at, at + share),) if share > 0 else (), **spec))
            at += share
        return cls(name, tuple(arms), salt or name, **kw)

    def active(self, now: float) -> bool:
        return (self.start is None or now >= self.start) and (self.stop is None or now < self.stop)


def check(exp: Experiment) -> None:
    """Refuse an experiment that cannot be served, with the reason.

    >>> check(Experiment.create("a.b", {"c": 1.0}))
    Traceback (most recent call last):
    ...
    ValueError: experiment name 'a.b' must be 1-64 letters, digits, _ or -
    """
    if not re.match(NAME_PATTERN, exp.name):
        raise ValueError(f"experiment name {exp.name!r} must be 1-64 letters, digits, _ or -")
    if exp.kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {exp.kind!r}")
    names = [a.name for a in exp.arms]
    if len(names) < 2:
        raise ValueError("an experiment needs at least two arms (the first is the control)")
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must differ: {names}")
    for a in names:
        if not re.match(NAME_PATTERN, a):
            raise ValueError(f"arm name {a!r} must be 1-64 letters, digits, _ or -")
    if exp.kind in ("interleaving", "shadow") and len(names) != 2:
        raise ValueError(f"a{'n' if exp.kind[0] == 'i' else ''} {exp.kind} experiment has exactly two arms")
    lo, hi = exp.traffic
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"traffic must be a slice [lo, hi) of [0, 1] with lo < hi, got [{lo:g}, {hi:g})")
    for a in exp.arms:
        for s_lo, s_hi in a.segments:
            if not 0.0 <= s_lo < s_hi <= 1.0 + EPS:
                raise ValueError(f"arm {a.name}: segment [{s_lo:g}, {s_hi:g}) is not inside [0, 1)")
    check_shares({a.name: a.share for a in exp.arms})
    if exp.start is not None and exp.stop is not None and exp.stop <= exp.start:
        raise ValueError("stop must come after start")


def check_shares(shares: dict[str, float]) -> None:
    if not shares:
        raise ValueError("an experiment needs at least one arm")
    if any(s < 0 for s in shares.values()):
        raise ValueError(f"shares must be >= 0: {shares}")
    if abs(sum(shares.values()) - 1.0) > 1e-9:
        raise ValueError(f"shares must add up to 1, got {sum(shares.values()):g}")


def assign(exp: Experiment, user_id: str, segment: str | None = None, now: float | None = None) -> Arm | None:
    """The arm ``user_id`` sees, or None when the experiment does not apply to them."""
    if now is not None and not exp.active(now):
        return None
    if exp.audience is not None and segment not in exp.audience:
        return None
    lo, hi = exp.traffic
    if (lo, hi) != (0.0, 1.0) and not lo <= unit_point(f"ns:{exp.namespace}", user_id) < hi:
        return None
    point = unit_point(exp.salt, user_id)
    return next((arm for arm in exp.arms if arm.holds(point)), None)


def assign_any(experiments: list[Experiment], user_id: str, segment: str | None = None,
               now: float | None = None) -> tuple[Experiment, Arm] | None:
    """The first experiment that takes ``user_id``, and its arm (namespaces keep them exclusive)."""
    for exp in experiments:
        arm = assign(exp, user_id, segment, now)
        if arm is not None:
            return exp, arm
    return None


def check_namespaces(experiments: list[Experiment]) -> None:
    """Experiments of one namespace must own disjoint slices of it.

    >>> a = Experiment.create("a", {"c": 1.0}, traffic=(0.0, 0.5))
    >>> b = Experiment.create("b", {"c": 1.0}, traffic=(0.4, 1.0))
    >>> check_namespaces([a, b])
    Traceback (most recent call last):
    ...
    ValueError: experiments a and b overlap in namespace 'default' (traffic [0, 0.5) and [0.4, 1))
    """
    by_ns: dict[str, list[Experiment]] = {}
    for exp in experiments:
        by_ns.setdefault(exp.namespace, []).append(exp)
    for ns, group in by_ns.items():
        group = sorted(group, key=lambda e: e.traffic)
        for a, b in zip(group, group[1:]):
            if b.traffic[0] < a.traffic[1] - EPS:
                raise ValueError(f"experiments {a.name} and {b.name} overlap in namespace {ns!r} "
                                 f"(traffic [{a.traffic[0]:g}, {a.traffic[1]:g}) and [{b.traffic[0]:g}, {b.traffic[1]:g}))")


def reshare(exp: Experiment, shares: dict[str, float]) -> Experiment:
    """New shares, moving as few users as possible.

    Arms that lose share give up the ends of their segments; arms that gain take the freed
    pieces. Users in the segments that stay keep their arm, so the mass moved is exactly
    half the sum of the absolute changes.

    >>> exp = Experiment.create("e", {"a": 0.5, "b": 0.5})
    >>> new = reshare(exp, {"a": 0.9, "b": 0.1})
    >>> [(arm.name, round(arm.share, 6)) for arm in new.arms]
    [('a', 0.9), ('b', 0.1)]
    >>> round(moved(exp, new), 6)
    0.4
    """
    check_shares(shares)
    known = {a.name for a in exp.arms}
    if set(shares) - known:
        raise ValueError(f"unknown arms {sorted(set(shares) - known)}: an arm is added by a new experiment")
    free: list[tuple[float, float]] = []
    kept: dict[str, list[tuple[float, float]]] = {}
    for arm in exp.arms:  # losers trim from their last segment backwards
        target = shares.get(arm.name, 0.0)
        segs, excess = list(arm.segments), arm.share - target
        while excess > EPS and segs:
            lo, hi = segs[-1]
            cut = min(excess, hi - lo)
            free.append((hi - cut, hi))
            segs[-1] = (lo, hi - cut)
            if segs[-1][1] - segs[-1][0] <= EPS:
                segs.pop()
            excess -= cut
        kept[arm.name] = segs
    free.sort()
    for arm in exp.arms:  # gainers take freed pieces, lowest first
        need = shares.get(arm.name, 0.0) - sum(hi - lo for lo, hi in kept[arm.name])
        while need > EPS and free:
            lo, hi = free.pop(0)
            take = min(need, hi - lo)
            kept[arm.name].append((lo, lo + take))
            if hi - (lo + take) > EPS:
                free.insert(0, (lo + take, hi))
            need -= take
    arms = tuple(replace(arm, segments=tuple(sorted(kept[arm.name]))) for arm in exp.arms)
    return replace(exp, arms=arms)


def moved(before: Experiment, after: Experiment) -> float:
    """The share of users whose arm differs between two layouts of one experiment."""
    points = sorted({0.0, 1.0, *(x for e in (before, after) for a in e.arms for s in a.segments for x in s)})

    def owner(exp: Experiment, p: float) -> str | None:
        return next((a.name for a in exp.arms if a.holds(p)), None)

    return sum(hi - lo for lo, hi in zip(points, points[1:])
               if owner(before, (lo + hi) / 2) != owner(after, (lo + hi) / 2))


# --- agreement of two ranked lists (shadow experiments) -----------------------------------------
def overlap_at_k(a: list[str], b: list[str], k: int | None = None) -> float:
    """Share of the top k of ``a`` also in the top k of ``b`` (k: the longer list's length).

    >>> overlap_at_k(["a", "b", "c", "d"], ["b", "a", "x", "y"])
    0.5
    """
    k = k or max(len(a), len(b))
    if not k:
        return 1.0
    return len(set(a[:k]) & set(b[:k])) / k


def rank_biased_overlap(a: list[str], b: list[str], p: float = 0.9) -> float:
    """Rank-biased overlap (Webber, Moffat and Zobel, 2010), the finite prefix sum extrapolated:
    1 for identical lists, 0 for disjoint ones, the top ranks weighing most (``p`` = persistence).

    >>> rank_biased_overlap(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> rank_biased_overlap(["a", "b"], ["c", "d"])
    0.0
    >>> 0 < rank_biased_overlap(["a", "b", "c"], ["b", "a", "d"]) < 1
    True
    """
    depth = min(len(a), len(b))
    if depth == 0:
        return 1.0 if len(a) == len(b) else 0.0
    seen_a, seen_b, overlap, total = set(), set(), 0, 0.0
    for d in range(1, depth + 1):
        x, y = a[d - 1], b[d - 1]
        if x == y:
            overlap += 1
        else:
            overlap += (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * p ** d
    # RBO_ext: the agreement at the last depth carried on to infinity
    return round(min(1.0, (1 - p) / p * total + (overlap / depth) * p ** depth), 12)
