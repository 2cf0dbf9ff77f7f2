"""Statistics of a team-draft interleaving experiment (``ranking/interleaving.py``).

Each interleaved list that got clicks has an outcome: ranker A won it, B won it, or a tie. Under
"no preference" a non-tied list is a fair coin, so the evidence is a sign test:

- **win rate** of A = wins_A / (wins_A + wins_B), ties left out, with a Wilson confidence
  interval (``scipy.stats.binomtest(...).proportion_ci``);
- **significance**: the two-sided exact binomial test of wins_A out of the non-tied lists
  against 1/2 (``scipy.stats.binomtest``);
- **Δ_AB** (Chapelle et al., 2012) = (wins_A + ties/2) / n − 1/2, the preference including the
  ties, reported beside it.

Lists with no click say nothing about preference and are not counted in ``n``.

This is a fixed-horizon test: read it once, at a sample size chosen in advance (interleaving
needs little traffic; see docs/off-policy.md). ``tests/unit/test_interleaving.py`` simulates
users whose clicks prefer one ranker (it wins) and identical rankers (no winner more often than α).

>>> r = analyse(wins_a=70, wins_b=40, ties=10)
>>> round(r.win_rate, 3), r.winner, r.p_value < 0.01
(0.636, 'A', True)
>>> analyse(0, 0, 3).winner is None
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from scipy import stats


@dataclass(frozen=True)
class InterleavingResult:
    wins_a: int
    wins_b: int
    ties: int
    n: int  # lists with at least one click
    win_rate: float  # A's share of the non-tied lists (nan when there are none)
    ci: tuple[float, float]  # for win_rate
    delta: float  # (wins_a + ties/2)/n - 1/2
    p_value: float
    significant: bool
    winner: str | None  # "A", "B", or None when not significant

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def analyse(wins_a: int, wins_b: int, ties: int = 0, alpha: float = 0.05) -> InterleavingResult:
    """Win rate, its (1-α) Wilson interval and the sign test's p-value."""
    if min(wins_a, wins_b, ties) < 0:
        raise ValueError("counts must be >= 0")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    decided = wins_a + wins_b
    n = decided + ties
    if decided == 0:
        return InterleavingResult(wins_a, wins_b, ties, n, math.nan, (0.0, 1.0), 0.0, 1.0, False, None)
    test = stats.binomtest(wins_a, decided, 0.5, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=1 - alpha, method="wilson")
    p = float(test.pvalue)
    significant = p < alpha
    winner = ("A" if wins_a > wins_b else "B") if significant else None
    delta = (wins_a + ties / 2) / n - 0.5
    return InterleavingResult(wins_a, wins_b, ties, n, wins_a / decided, (float(ci.low), float(ci.high)), delta,
                              p, significant, winner)


def analyse_outcomes(winners: Iterable[str | None], alpha: float = 0.05) -> InterleavingResult:
    """``analyse`` from per-list winners ("A", "B" or None for a tie) of lists that got clicks.

    >>> analyse_outcomes(["A", "B", None, "A"]).wins_a
    2
    """
    counts = {"A": 0, "B": 0, None: 0}
    for w in winners:
        if w not in counts:
            raise ValueError(f"a list's winner is 'A', 'B' or None, got {w!r}")
        counts[w] += 1
    return analyse(counts["A"], counts["B"], counts[None], alpha)
