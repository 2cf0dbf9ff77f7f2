"""Why an item is in a list: provenance of candidates and reasons a person can read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass
class Provenance:
    """Why each candidate is there, for reasons a person can read."""

    popular_segment: str | None = None
    popular: set[str] = field(default_factory=set)
    trending: set[str] = field(default_factory=set)
    viewed_with: dict[str, str] = field(default_factory=dict)  # item -> recent item it co-occurs with
    bought_with: dict[str, str] = field(default_factory=dict)  # item -> item bought with it
    similar_to: dict[str, str] = field(default_factory=dict)  # item -> recent item it is close to


def reason(item: str, prov: Provenance, titles: Mapping[str, str | None], model: str | None) -> str:
    """A reason in words for one served item.

    >>> p = Provenance(viewed_with={"b": "a"}, popular={"c"}, popular_segment="nurses")
    >>> reason("b", p, {"a": "Alien"}, "ncf")
    'because you viewed Alien'
    >>> reason("c", p, {}, None)
    'popular in your segment (nurses)'
    >>> reason("d", p, {}, "ncf")
    'recommended for you by ncf'
    """
    name = lambda i: titles.get(i) or i  # noqa: E731
    if item in prov.bought_with:
        return f"often bought with {name(prov.bought_with[item])}"
    if item in prov.viewed_with:
        return f"because you viewed {name(prov.viewed_with[item])}"
    if item in prov.similar_to:
        return f"similar to {name(prov.similar_to[item])}"
    if item in prov.trending:
        return "trending now"
    if item in prov.popular:
        return f"popular in your segment ({prov.popular_segment})" if prov.popular_segment else "popular right now"
    return f"recommended for you by {model}" if model else "popular right now"
