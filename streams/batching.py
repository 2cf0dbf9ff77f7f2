"""How big an interactions batch is and how long it waits, from what the worker observes.

A batch is, first of all, whatever arrived while the previous one was being applied: under a
light load that is a handful of events, taken at once (low latency); under a heavy load it grows
by itself. The policy bounds that self-clocking from three observations:

- the *cost* of an event in the Redis script (EWMA of apply seconds per event): while the worker
  keeps up, a batch is capped at ``budget_s`` of script time, so one script call never blocks
  Redis (and the API's reads) for long;
- the *lag* (records behind the high-water mark): more than a second of arrivals behind, the cap
  is lifted to ``catchup_budget_s`` of script time, at most ``batch_size`` — catching up wants
  fewer, larger script calls, but one call must still end well within the API's Redis timeout
  (``redis_timeout_s``): a 5,000-event script held Redis 0.4–0.5 s on a loaded machine, every
  read of the API timed out behind it, its breaker opened and lists were served degraded;
- the *arrival rate* and the *utilisation* (share of wall time spent applying): only a worker
  near saturation lets a small batch wait (at most ``within_s``) for more, trading a few
  milliseconds for fewer per-batch costs; an idle one never waits.

>>> p = BatchPolicy(batch_size=5000, budget_s=0.025, within_s=0.02, catchup_budget_s=0.15)
>>> for t in range(1, 101):                 # 2,000 events/s in batches of 20, 2 ms of work each
...     p.observe(20, 0.002, t / 100)
>>> round(p.rate), round(p.cost_s * 1e6), p.max_records, p.linger_s(20)
(2000, 100, 250, 0.0)
>>> p.set_lag(5000); p.max_records           # 2.5 s behind: catch up in batches of 150 ms of script
1500
"""
from __future__ import annotations

from dataclasses import dataclass

from schemas.settings import Settings

ALPHA = 0.2  # EWMA weight of the newest observation


@dataclass
class BatchPolicy:
    batch_size: int = 5000
    budget_s: float = 0.025
    within_s: float = 0.02
    catchup_budget_s: float = 0.15
    min_batch: int = 100
    poll_ms: int = 100  # an idle getmany returns as soon as a record arrives; this only bounds the wait

    rate: float = 0.0  # events/s arriving (consumed, when caught up)
    cost_s: float = 0.0  # apply seconds per event
    utilisation: float = 0.0  # share of wall time applying batches
    lag: int = 0
    _last: float | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> "BatchPolicy":
        return cls(batch_size=s.batch_size, budget_s=s.batch_budget_s, within_s=s.batch_within_s,
                   catchup_budget_s=s.batch_catchup_budget_s, min_batch=min(100, s.batch_size))

    def observe(self, n: int, busy_s: float, now: float) -> None:
        """One batch of ``n`` events applied in ``busy_s`` seconds, ending at ``now`` (monotonic)."""
        if self._last is not None:
            elapsed = max(now - self._last, 1e-6)
            self.rate += ALPHA * (n / elapsed - self.rate)
            self.utilisation += ALPHA * (min(1.0, busy_s / elapsed) - self.utilisation)
        self._last = now
        if n:
            self.cost_s += ALPHA * (busy_s / n - self.cost_s) if self.cost_s else busy_s / n

    def set_lag(self, lag: int) -> None:
        self.lag = lag

    @property
    def max_records(self) -> int:
        catching_up = self.lag > max(self.rate, self.batch_size / 10)  # over a second behind
        if self.cost_s <= 0:
            return self.batch_size
        budget = self.catchup_budget_s if catching_up else self.budget_s
        return int(min(self.batch_size, max(self.min_batch, budget / self.cost_s + 1e-9)))  # + float error

    def linger_s(self, n: int) -> float:
        """How long a batch of ``n`` waits for more before it is applied (0 unless near saturation)."""
        if self.utilisation < 0.6 or self.rate <= 0:
            return 0.0
        want = min(self.max_records, self.rate * self.within_s)
        if n >= want / 2:
            return 0.0
        return min(self.within_s, (want - n) / self.rate)
