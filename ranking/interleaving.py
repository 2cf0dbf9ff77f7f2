"""Team-draft interleaving (Radlinski, Kurup and Joachims, "How does clickthrough data reflect
retrieval quality?", CIKM 2008): two rankers' lists merged into one, each shown item drafted by
one team, so that a user's clicks say which ranker they preferred on this very request.

Each round, the team with fewer picks so far (a coin toss when even) adds its highest-ranked
item not yet shown. The coin is seeded from ``key`` (the request id): the same request always
gives the same list, and no global random state is touched. Pure: plain values in and out.

>>> team_draft(["a", "b", "c"], ["b", "d", "a"], k=4, key="r-1")
[('a', 'A'), ('b', 'B'), ('c', 'A'), ('d', 'B')]
>>> credit([("a", "A"), ("b", "B"), ("c", "A"), ("d", "B")], clicked_positions=[0, 2])
Outcome(a=2, b=0, winner='A')
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

TEAM_A, TEAM_B = "A", "B"


def _rng(key: str) -> np.random.Generator:
    """A generator of its own per key (SHA-256: stable across processes and Python versions)."""
    seed = int.from_bytes(hashlib.sha256(f"team-draft\x1f{key}".encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


def team_draft(a: Sequence[str], b: Sequence[str], k: int, key: str) -> list[tuple[str, str]]:
    """Interleave rankings ``a`` and ``b`` into at most ``k`` (item, team) pairs, no item twice.

    When one list runs out of new items the other keeps drafting, so the result is as long as
    ``k`` allows and the union of the lists holds.

    >>> team_draft(["x", "y"], ["x", "y"], k=2, key="r")[0][0]  # identical lists: identical order
    'x'
    >>> len(team_draft(["a"], ["b", "c", "d"], k=10, key="r"))
    4
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    rng = _rng(key)
    shown: set[str] = set()
    out: list[tuple[str, str]] = []
    cursor = {TEAM_A: 0, TEAM_B: 0}
    lists = {TEAM_A: a, TEAM_B: b}
    picks = {TEAM_A: 0, TEAM_B: 0}

    def next_new(team: str) -> str | None:
        ranked, i = lists[team], cursor[team]
        while i < len(ranked) and ranked[i] in shown:
            i += 1
        cursor[team] = i
        return ranked[i] if i < len(ranked) else None

    while len(out) < k:
        cand_a, cand_b = next_new(TEAM_A), next_new(TEAM_B)
        if cand_a is None and cand_b is None:
            break
        if cand_a is None:
            team = TEAM_B
        elif cand_b is None:
            team = TEAM_A
        elif picks[TEAM_A] != picks[TEAM_B]:
            team = TEAM_A if picks[TEAM_A] < picks[TEAM_B] else TEAM_B
        else:
            team = TEAM_A if rng.random() < 0.5 else TEAM_B
        item = cand_a if team == TEAM_A else cand_b
        shown.add(item)
        picks[team] += 1
        out.append((item, team))
    return out


@dataclass(frozen=True)
class Outcome:
    """Clicks credited to each team on one interleaved list, and who won it (``None``: a tie)."""

    a: int
    b: int
    winner: str | None


def credit(interleaved: Sequence[tuple[str, str]], clicked_positions: Iterable[int]) -> Outcome:
    """Credit each click (a 0-based position of the interleaved list) to the team that drafted
    the item there; the team with more clicks wins the list. Positions outside the list are
    ignored (a click on something else), and a position clicked twice counts once.

    >>> credit([("a", "A"), ("b", "B")], [])
    Outcome(a=0, b=0, winner=None)
    >>> credit([("a", "A"), ("b", "B")], [1, 1, 7]).winner
    'B'
    """
    clicks = {TEAM_A: 0, TEAM_B: 0}
    for pos in set(clicked_positions):
        if 0 <= pos < len(interleaved):
            clicks[interleaved[pos][1]] += 1
    a, b = clicks[TEAM_A], clicks[TEAM_B]
    return Outcome(a, b, TEAM_A if a > b else TEAM_B if b > a else None)


def credit_items(interleaved: Sequence[tuple[str, str]], clicked_items: Iterable[str]) -> Outcome:
    """``credit`` by clicked item ids instead of positions (what a click event carries when its
    position is missing).

    >>> credit_items([("a", "A"), ("b", "B")], ["a", "zz"]).winner
    'A'
    """
    where = {item: pos for pos, (item, _team) in enumerate(interleaved)}
    return credit(interleaved, [where[i] for i in clicked_items if i in where])
