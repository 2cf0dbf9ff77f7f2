"""Plain value types every ranking function speaks."""
from __future__ import annotations

#: A candidate list, ``[(item_id, score), ...]``, best first.
Scored = list[tuple[str, float]]
