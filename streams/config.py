"""Run-time stream configuration: the settings, overridden live from the Redis hash ``Keys.config``.

Operators change strengths or the trending half-life without a restart, e.g.
``redis-cli HSET sr:config strength.click 3 trend_half_life_s 600``; the agents re-read the
hash every ``Settings.config_refresh_s`` seconds. Fields:

- ``strength.<type>``, ``reward.<type>``: a number
- ``trend_half_life_s``, ``session_gap_s``, ``bandit_reward_window_s``: a positive number
- ``invalidating_types``: comma-separated event types

>>> base = StreamConfig(strengths={"view": 1.0}, half_life_s=60.0, session_gap_s=10.0,
...                     rewards={}, reward_window_s=5.0, invalidating=frozenset({"view"}))
>>> cfg, problems = base.with_overrides({"strength.view": "2.5", "trend_half_life_s": "-1"})
>>> cfg.strengths["view"], cfg.half_life_s, problems
(2.5, 60.0, ['trend_half_life_s: must be a positive number, got -1'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from schemas.events import EventType
from schemas.settings import Settings

_TYPES = {t.value for t in EventType}
_POSITIVE = {"trend_half_life_s": "half_life_s", "session_gap_s": "session_gap_s",
             "bandit_reward_window_s": "reward_window_s"}


@dataclass(frozen=True)
class StreamConfig:
    strengths: dict[str, float]
    half_life_s: float
    session_gap_s: float
    rewards: dict[str, float]
    reward_window_s: float
    invalidating: frozenset[str]

    @classmethod
    def from_settings(cls, s: Settings) -> "StreamConfig":
        return cls(
            strengths=dict(s.event_strengths),
            half_life_s=s.trend_half_life_s,
            session_gap_s=s.session_gap_s,
            rewards=dict(s.bandit_rewards),
            reward_window_s=s.bandit_reward_window_s,
            invalidating=frozenset(s.invalidating_types),
        )

    def with_overrides(self, fields: dict[str, str]) -> tuple["StreamConfig", list[str]]:
        """Apply the override hash; a bad field is reported and skipped, never fatal."""
        cfg, problems = self, []
        strengths, rewards = dict(self.strengths), dict(self.rewards)
        for name, raw in sorted(fields.items()):
            head, _, typ = name.partition(".")
            try:
                if head in ("strength", "reward") and typ:
                    if typ not in _TYPES:
                        raise ValueError(f"unknown event type {typ!r}")
                    (strengths if head == "strength" else rewards)[typ] = _number(raw)
                elif name in _POSITIVE:
                    value = _number(raw)
                    if value <= 0:
                        raise ValueError(f"must be a positive number, got {raw}")
                    cfg = replace(cfg, **{_POSITIVE[name]: value})
                elif name == "invalidating_types":
                    types = {t.strip() for t in raw.split(",") if t.strip()}
                    unknown = types - _TYPES
                    if unknown:
                        raise ValueError(f"unknown event types {sorted(unknown)}")
                    cfg = replace(cfg, invalidating=frozenset(types))
                else:
                    raise ValueError("unknown setting")
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        return replace(cfg, strengths=strengths, rewards=rewards), problems


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {raw!r}")
    return value
