"""A policy: everything that turns model scores and real-time signals into a served list.

A policy is one named, versioned value stored in a run (``policy.json``): which models are
blended with which weights (one model is a blend of one; none is popularity), how scores
are rescaled before they are mixed, how many candidates each source gives, the MMR trade-off,
the category cap and whether short lists are filled from popularity. The trainer chooses it
on validation and saves it; the API serves it; the offline evaluation measures it; all of
them through ``ranking.home``.

>>> p = Policy.blend({"ease": 1.0, "multvae": 0.5}, mmr_lambda=0.9)
>>> p.name, p.models, p.weights
('blend', ['ease', 'multvae'], {'ease': 1.0, 'multvae': 0.5})
>>> Policy.from_dict(p.to_dict()) == p
True
>>> Policy.single("ease").name, Policy.popularity().is_popularity
('ease', True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ranking.scores import RESCALERS

#: The name of the popularity signal when it is a blend component (it is not a model of the run).
POPULARITY = "popularity"
POLICY_FILE = "policy.json"
SCHEMA_VERSION = 1


class InvalidPolicy(ValueError):
    """A policy document that cannot be served (unknown field, bad weight, bad λ...)."""


@dataclass(frozen=True)
class Policy:
    name: str = POPULARITY
    #: (component, weight) pairs; a component is a model of the run or ``popularity``
    components: tuple[tuple[str, float], ...] = ()
    rescale: str = "zscore"
    #: candidates per source when a model is not scored over the whole catalogue
    candidates: int = 200
    #: catalogues up to this size are scored in full for every request (no candidate is lost)
    full_scoring_max_items: int = 50_000
    mmr_lambda: float = 1.0
    category_cap: int | None = None
    fill: bool = True
    #: > 0: the cross-encoder reranks the top N of every home / similar list served under this policy
    #: (inference/reranking.py); 0: only when a request asks (use_reranker=true)
    rerank_top_n: int = 0
    version: int = SCHEMA_VERSION
    #: where the values came from (e.g. "tuned on validation"), for people reading the run
    notes: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidPolicy("a policy needs a name")
        for comp, w in self.components:
            if not isinstance(comp, str) or not comp:
                raise InvalidPolicy(f"policy {self.name!r}: component {comp!r} is not a name")
            if not isinstance(w, (int, float)) or w != w or w < 0:
                raise InvalidPolicy(f"policy {self.name!r}: weight of {comp!r} must be a number >= 0, got {w!r}")
        if self.rescale not in RESCALERS:
            raise InvalidPolicy(f"policy {self.name!r}: rescale {self.rescale!r} is not one of {', '.join(RESCALERS)}")
        if not 0.0 <= float(self.mmr_lambda) <= 1.0:
            raise InvalidPolicy(f"policy {self.name!r}: mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if self.category_cap is not None and self.category_cap < 1:
            raise InvalidPolicy(f"policy {self.name!r}: category_cap must be >= 1 or null")
        if not isinstance(self.rerank_top_n, int) or self.rerank_top_n < 0:
            raise InvalidPolicy(f"policy {self.name!r}: rerank_top_n must be an integer >= 0, got {self.rerank_top_n!r}")
        if self.candidates < 1 or self.full_scoring_max_items < 0:
            raise InvalidPolicy(f"policy {self.name!r}: candidates must be >= 1 and full_scoring_max_items >= 0")

    # --- constructors ------------------------------------------------------------------------
    @classmethod
    def popularity(cls, **kw: Any) -> "Policy":
        return cls(name=POPULARITY, components=(), **kw)

    @classmethod
    def single(cls, model: str, **kw: Any) -> "Policy":
        return cls(name=model, components=((model, 1.0),), **kw)

    @classmethod
    def blend(cls, weights: Mapping[str, float], name: str = "blend", **kw: Any) -> "Policy":
        comps = tuple((m, float(w)) for m, w in weights.items() if float(w) > 0)
        return cls(name=name, components=comps, **kw)

    def with_(self, **changes: Any) -> "Policy":
        return replace(self, **changes)

    # --- views -------------------------------------------------------------------------------
    @property
    def weights(self) -> dict[str, float]:
        return {m: float(w) for m, w in self.components if w > 0}

    @property
    def models(self) -> list[str]:
        """The run's models this policy needs (popularity is a signal, not a model)."""
        return [m for m, w in self.components if w > 0 and m != POPULARITY]

    @property
    def is_popularity(self) -> bool:
        return not self.models

    def restricted_to(self, available: set[str] | list[str]) -> "Policy":
        """The same policy over the components a run actually has (a missing model is dropped)."""
        keep = tuple((m, w) for m, w in self.components if m == POPULARITY or m in set(available))
        return self if keep == self.components else replace(self, components=keep)

    # --- storage -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = [{"model": m, "weight": w} for m, w in self.components]
        d["notes"] = dict(self.notes)
        return d

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Policy":
        if not isinstance(doc, Mapping):
            raise InvalidPolicy(f"a policy is a JSON object, got {type(doc).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(doc) - known
        if unknown:
            raise InvalidPolicy(f"unknown policy field(s): {', '.join(sorted(unknown))}")
        d = dict(doc)
        if int(d.get("version", SCHEMA_VERSION)) > SCHEMA_VERSION:
            raise InvalidPolicy(f"policy version {d['version']} is newer than this streamrec understands")
        comps = []
        for c in d.get("components", []):
            if isinstance(c, Mapping) and "model" in c:
                comps.append((str(c["model"]), float(c.get("weight", 1.0))))
            elif isinstance(c, (list, tuple)) and len(c) == 2:
                comps.append((str(c[0]), float(c[1])))
            else:
                raise InvalidPolicy(f"policy component {c!r}: expected {{'model': name, 'weight': w}}")
        d["components"] = tuple(comps)
        d["notes"] = dict(d.get("notes") or {})
        try:
            return cls(**d)
        except TypeError as exc:
            raise InvalidPolicy(str(exc)) from None
