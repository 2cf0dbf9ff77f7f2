"""A user's real-time state as plain values: what the home policy reads besides model scores.

Online, ``inference`` builds it from Redis (the worker's keys) in one round trip; offline,
``trainer.signals`` builds it from the training split the way the worker would have
written it. Either way ``ranking.home`` sees the same shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ranking.types import Scored


@dataclass
class UserSignals:
    user_id: str
    segment: str | None = None
    level: int | None = None
    seen: set[str] = field(default_factory=set)
    recent: list[str] = field(default_factory=list)  # newest first
    pop_global: Scored = field(default_factory=list)  # best first
    pop_segment: Scored = field(default_factory=list)
    trending: Scored = field(default_factory=list)
    pairs: dict[str, Scored] = field(default_factory=dict)  # recent item -> items that co-occur with it
    degraded: bool = False  # built without the live state (Redis away)

    @property
    def popularity(self) -> Scored:
        """Segment popularity first where the user has a segment, then global.

        >>> UserSignals("u", pop_global=[("a", 3.0), ("b", 1.0)], pop_segment=[("b", 9.0)]).popularity
        [('b', 9.0), ('a', 3.0)]
        """
        if not self.pop_segment:
            return self.pop_global
        have = {i for i, _ in self.pop_segment}
        return self.pop_segment + [(i, s) for i, s in self.pop_global if i not in have]
