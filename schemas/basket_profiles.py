"""Basket parameter profiles: the file format, its validation and the shipped file.

A profile file (JSON) maps profile names to buckets: ``"default"``, exact sizes (``"1"``,
``"2"``...) and one open-ended ``"N+"`` (``"3+"``); a bucket overrides ``default`` key by
key. Keys starting with ``_`` are comments. Every key of a bucket is a field of
``BasketParams`` (its name, type and range are what the file may hold), so the knobs live
here, beside the format they define; the basket policy (``ranking.basket``) reads them and
the API (``inference.basket.profiles``) keeps which profile is active.

This is the one part of the basket policy that reads a file: the trainer's evaluation and
the API both load profiles through ``load_profiles``.

>>> profs = load_profiles()
>>> sorted(profs)
['diversity', 'precision']
>>> select_bucket(profs["precision"], 1), select_bucket(profs["precision"], 7)
('1', '3+')
>>> params_for(profs["diversity"], 1).CAP_PER_GAMME
1
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from schemas.errors import BadBasketProfile

#: The profiles shipped with streamrec (package data).
SHIPPED = Path(__file__).with_name("basket_profiles.json")
#: The name of the profile tuned on the serving run's own baskets (``trainer.basket_tuning``).
TUNED = "tuned"
#: Pair normalisations (``BasketParams.PAIR_NORM``; ``ranking.basket.scoring.link_weights``).
PAIR_NORMS = ("raw", "conditional", "cosine", "lift", "pmi", "jaccard")
_OPEN = re.compile(r"^(\d+)\+$")


@dataclass(frozen=True)
class BasketParams:
    """Every knob of one bucket (see README, section *basket*, for what each one does)."""

    W_PAIR: float = 1.0  # segment pairs A→B
    PAIR_ANY_WEIGHT: float = 0.5  # weight of global (ANY) pairs relative to segment pairs
    W_SEG_PAIRS: float = 1.0  # weight of the segments' own pairs; 0 reads ANY pairs only (weight 1)
    W_REV: float = 0.5  # reverse pairs (predecessors of basket items), relative to forward
    W_EMB: float = 0.0  # cosine to the basket centroid (LightFM item embeddings)
    W_POPP: float = 0.0  # segment popularity
    W_POPG: float = 0.1  # global popularity
    W_COVERAGE: float = 0.0  # × share of basket items that link to the candidate
    W_PL_BASE: float = 0.0  # additive boost of private-label items
    W_PL_PER_BASK_PL: float = 0.0  # × the basket's private-label share, private-label items only
    CAP_PER_GAMME: int = 0  # at most this many items per category; 0 = no cap
    DIVERSIFY: bool = False  # MMR re-ranking
    MMR_LAMBDA: float = 0.7  # relevance vs novelty in MMR
    PAIR_QUOTA: int = 0  # at least this many results come from pairs (when pairs offer them)
    COVERAGE_GREEDY: bool = False  # pick for expected coverage of the basket's rest (run's cover model)
    W_COVER_GREEDY: float = 1.0  # weight of the coverage gain (rescaled to [0, 1]) next to relevance
    COVER_SIZE_POWER: float = 0.0  # discount large-basket components in the cover posterior (ranking/basket/cover.py)
    TOP_PAIRS: int = 100  # pairs read per basket item and segment
    PAIRS_PER_BASKET: int = 2000  # pairs read per basket and segment in all: large baskets read fewer per item
    TOP_POPP: int = 50  # segment-popular items read
    TOP_POPG: int = 50  # globally popular items read
    TOP_PAIRS_ANY_FRAC: float = 0.5  # share of TOP_PAIRS read from ANY pairs when segments are known
    SEG_TOP_K: int = 3  # segments kept by auto-detection
    SEG_TEMPERATURE: float = 0.1  # softmax temperature over cosine similarities
    SEG_MIN_MASS: float = 0.1  # segments below this weight are dropped (weights renormalised)
    # how a pair count C(a, b) becomes a link (basket item a, candidate b; n = baskets holding
    # an item, N = baskets): raw C, conditional C/n_a, cosine C/sqrt(n_a n_b), lift C N/(n_a n_b),
    # pmi log(lift) (positive part), jaccard C/(n_a + n_b - C); needs the run's item counts
    PAIR_NORM: str = "raw"
    POP_DAMPING: float = 0.0  # IDF-style damping: the link is further divided by n_b ** POP_DAMPING
    # size-weighted co-occurrence: ANY pairs of a basket item a counted over the run's training
    # baskets b holding a (at most COCOVER_BASKETS, latest first), each adding |b| ** -PAIR_SIZE_POWER
    # (1: P(c in the rest | a shown) when the item shown is any item of the basket); 0: the stream's counts
    PAIR_SIZE_POWER: float = 0.0
    PAIR_RESCALE: bool = True  # divide each pair list by its maximum (False: links add up as they are)
    COCOVER_RHO: float = 0.0  # conditional cover: each pick discounts the training baskets it is in by this share
    COCOVER_BASKETS: int = 2000  # training baskets the conditional cover reads per basket, split over its items (latest first)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> "BasketParams":
        """The parameters of one (merged) bucket; raise ``BadBasketProfile`` (a ``ValueError``)."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(k for k in d if k not in known and not k.startswith("_"))
        if unknown:
            raise BadBasketProfile(f"{where}: unknown parameter(s) {unknown}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            kind = {"float": float, "int": int, "bool": bool, "str": str}[str(f.type)]
            if kind is str:
                if v not in PAIR_NORMS:
                    raise BadBasketProfile(f"{where}: {f.name} must be one of {list(PAIR_NORMS)}, got {v!r}")
                values[f.name] = v
                continue
            if kind is bool and not isinstance(v, bool) or kind is not bool and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise BadBasketProfile(f"{where}: {f.name} must be a {kind.__name__}, got {v!r}")
            if kind is int and float(v) != int(v):
                raise BadBasketProfile(f"{where}: {f.name} must be a whole number, got {v!r}")
            if kind is not bool and v < 0:
                raise BadBasketProfile(f"{where}: {f.name} must be >= 0, got {v!r}")
            values[f.name] = kind(v)
        out = cls(**values)
        if (not 0 <= out.MMR_LAMBDA <= 1 or not 0 <= out.TOP_PAIRS_ANY_FRAC <= 1 or out.SEG_TEMPERATURE <= 0
                or not 0 <= out.COCOVER_RHO <= 1):
            raise BadBasketProfile(f"{where}: MMR_LAMBDA, TOP_PAIRS_ANY_FRAC and COCOVER_RHO lie in [0, 1]; "
                                   f"SEG_TEMPERATURE > 0")
        return out


def _bucket_ok(name: str) -> bool:
    return name == "default" or name.isdigit() or bool(_OPEN.match(name))


def load_profiles(path: Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Read and validate a profile file (the shipped one by default); raise ``BadBasketProfile``."""
    path = Path(path) if path else SHIPPED
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadBasketProfile(f"cannot read basket profiles {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise BadBasketProfile(f"{path}: expected an object of profiles")
    profiles = {k: v for k, v in raw.items() if not k.startswith("_")}
    if not profiles:
        raise BadBasketProfile(f"{path}: no profile")
    for name, buckets in profiles.items():
        if not isinstance(buckets, dict) or "default" not in buckets:
            raise BadBasketProfile(f"{path}: profile {name!r} needs a 'default' bucket")
        buckets = {k: v for k, v in buckets.items() if not k.startswith("_")}
        bad = [b for b in buckets if not _bucket_ok(b)]
        if bad or sum(1 for b in buckets if _OPEN.match(b)) > 1:
            raise BadBasketProfile(f"{path}: profile {name!r}: buckets are 'default', '1', '2', ... and one 'N+' "
                                   f"(got {bad or list(buckets)})")
        profiles[name] = buckets
        for b in buckets:
            params_for(buckets, _size_of(b), where=f"{path}: {name}/{b}")
    return profiles


def _size_of(bucket: str) -> int:
    m = _OPEN.match(bucket)
    return int(m.group(1)) if m else (int(bucket) if bucket.isdigit() else 0)


def select_bucket(profile: dict[str, Any], n: int) -> str:
    """The bucket for a basket of ``n`` items: the exact size, else the ``N+`` bucket when
    ``n >= N``, else ``default``."""
    if str(n) in profile:
        return str(n)
    for b in profile:
        m = _OPEN.match(b)
        if m and n >= int(m.group(1)):
            return b
    return "default"


def params_for(profile: dict[str, Any], n: int, where: str = "") -> BasketParams:
    """The parameters of a basket of ``n`` items: its bucket over the profile's ``default``."""
    bucket = select_bucket(profile, n)
    merged = {**profile["default"], **profile.get(bucket, {})}
    return BasketParams.from_dict(merged, where or f"bucket {bucket}")
