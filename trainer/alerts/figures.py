"""What the monitor judges, read from where the product keeps it.

- per-arm rates and means from the stream's day counters (``Keys.stats_day``: ``{arm}:impressions``,
  ``{arm}:clicks``, ``type:{type}``), summed over the recent and the baseline windows;
- the workers' lag reports (``Keys.worker_lag``);
- the DLQ rate since the monitor's last look (``trainer.data_quality``, on the broker);
- the promotion history (``promotions.json`` in the artifact dir).

The client is a synchronous redis-py client with ``decode_responses=True``.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from schemas.keys import Keys
from trainer.alerts.checks import Mean, Rate

STALE_S = 15.0  # a lag report older than this is not a live worker's


def days(now: float, recent_days: int, baseline_days: int) -> tuple[list[str], list[str]]:
    """The UTC day keys of the recent window (today included) and of the baseline before it.

    >>> days(datetime(2026, 11, 30, 12, tzinfo=timezone.utc).timestamp(), 1, 2)
    (['2026-11-30'], ['2026-11-29', '2026-11-28'])
    """
    today = datetime.fromtimestamp(now, tz=timezone.utc).date()
    span = [(today - timedelta(days=i)).isoformat() for i in range(recent_days + baseline_days)]
    return span[:recent_days], span[recent_days:]


def _day_counters(client, keys: Keys, day_keys: list[str]) -> list[dict[str, str]]:  # noqa: ANN001
    pipe = client.pipeline(transaction=False)
    for d in day_keys:
        pipe.hgetall(keys.stats_day(d))
    return pipe.execute()


def arm_rates(client, keys: Keys, recent: list[str], baseline: list[str]) -> dict[str, tuple[Rate, Rate]]:  # noqa: ANN001
    """{arm: (recent CTR, baseline CTR)} as clicks over impressions."""
    def totals(day_keys: list[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for fields in _day_counters(client, keys, day_keys):
            for field, n in fields.items():
                arm, _, what = field.rpartition(":")
                if arm and arm != "type" and what in ("impressions", "clicks"):
                    out.setdefault(arm, [0, 0])[0 if what == "clicks" else 1] += int(n)
        return out

    now, base = totals(recent), totals(baseline)
    return {arm: (Rate(*now.get(arm, [0, 0])), Rate(*base.get(arm, [0, 0]))) for arm in set(now) | set(base)}


def arm_feedback(client, keys: Keys, recent: list[str],  # noqa: ANN001
                 baseline: list[str]) -> dict[str, dict[str, tuple]]:
    """{arm: {"positive_rate": (recent, baseline) Rate, "rating_mean": (recent, baseline) Mean}}
    from the feedback counters (docs/feedback.md): positive over impressions; the rating's mean
    and standard deviation from ``rating_sum``, ``rating_sq`` and ``rating_count``."""
    wanted = ("impressions", "positive", "rating_sum", "rating_sq", "rating_count")

    def totals(day_keys: list[str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for fields in _day_counters(client, keys, day_keys):
            for field, n in fields.items():
                arm, _, what = field.rpartition(":")
                if arm and arm != "type" and what in wanted:
                    got = out.setdefault(arm, dict.fromkeys(wanted, 0.0))
                    got[what] += float(n)
        return out

    def mean(c: dict[str, float]) -> Mean:
        n = int(c["rating_count"])
        if n < 2:
            return Mean(c["rating_sum"] / n if n else 0.0, 0.0, n)
        m = c["rating_sum"] / n
        var = max(0.0, (c["rating_sq"] - n * m * m) / (n - 1))
        return Mean(m, var ** 0.5, n)

    now, base = totals(recent), totals(baseline)
    empty = dict.fromkeys(wanted, 0.0)
    out = {}
    for arm in set(now) | set(base):
        r, b = now.get(arm, empty), base.get(arm, empty)
        out[arm] = {"positive_rate": (Rate(int(r["positive"]), int(r["impressions"])),
                                      Rate(int(b["positive"]), int(b["impressions"]))),
                    "rating_mean": (mean(r), mean(b))}
    return out


def event_volume(client, keys: Keys, today: str, baseline: list[str]) -> tuple[int, float]:  # noqa: ANN001
    """(events today, mean events per baseline day), impressions left out (the API's, not users')."""
    def events(fields: dict[str, str]) -> int:
        return sum(int(n) for f, n in fields.items() if f.startswith("type:") and f != "type:impression")

    [now] = [events(f) for f in _day_counters(client, keys, [today])]
    base = [events(f) for f in _day_counters(client, keys, baseline)]
    return now, (sum(base) / len(base) if base else 0.0)


def records_behind(client, keys: Keys, now: float | None = None) -> int | None:  # noqa: ANN001
    """Records the live workers are behind, summed; None when no worker reports."""
    now = time.time() if now is None else now
    live = []
    for raw in client.hgetall(keys.worker_lag).values():
        try:
            rep = json.loads(raw)
            if now - float(rep["reported_at"]) <= STALE_S:
                live.append(int(rep.get("records_behind", 0)))
        except (ValueError, KeyError, TypeError):
            continue
    return sum(live) if live else None


def days_since_promotion(artifact_dir: Path, now: float | None = None) -> float | None:
    """Days since the last promotion; None when nothing was ever promoted (nothing to go stale)."""
    path = Path(artifact_dir) / "promotions.json"
    try:
        log = json.loads(path.read_text()).get("log", [])
    except (OSError, ValueError):
        return None
    promoted = [e["at"] for e in log if e.get("action") == "promote" and e.get("at")]
    if not promoted:
        return None
    last = datetime.fromisoformat(max(promoted)).timestamp()
    return ((time.time() if now is None else now) - last) / 86400.0
