"""A seeded synthetic catalog and event history, so ``streamrec up --demo`` shows real
recommendations on its first run with nothing to download.

Shaped like a learning-content shop: items in categories with levels, power-law
popularity, users in segments with category tastes, sessions of views/clicks/downloads/
enrolments, and purchase baskets whose items come with their usual companions.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from schemas import topics

CATEGORIES = ["data-science", "web", "cloud", "security", "design", "business", "languages", "music",
              "photography", "finance", "devops", "mobile"]
SEGMENTS = {  # segment -> categories it favours
    "student": ["languages", "web", "data-science"],
    "engineer": ["cloud", "devops", "security", "web"],
    "designer": ["design", "photography", "mobile"],
    "manager": ["business", "finance", "languages"],
    "artist": ["music", "photography", "design"],
}
ADJECTIVES = ["Practical", "Modern", "Complete", "Hands-on", "Essential", "Advanced", "Applied", "Visual"]
NOUNS = ["Foundations", "Workshop", "Bootcamp", "Masterclass", "Toolkit", "Field Guide", "Projects", "Patterns"]
TYPES = [("view", 0.58), ("click", 0.25), ("download", 0.08), ("enroll", 0.05), ("rate", 0.04)]


@dataclass
class DemoData:
    catalog: list[dict]
    users: list[dict]
    events: list[dict]

    def records(self):
        """``(topic, key, value)`` for the producer: catalog and users before events."""
        for item in self.catalog:
            yield topics.CATALOG, item["item_id"], item
        for user in self.users:
            yield topics.USERS, user["user_id"], user
        for ev in self.events:
            yield topics.INTERACTIONS, ev["user_id"], ev


def generate(n_items: int = 400, n_users: int = 600, days: int = 30, seed: int = 7,
             now: datetime | None = None) -> DemoData:
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    catalog = []
    for j in range(n_items):
        cat = CATEGORIES[j % len(CATEGORIES)]
        title = f"{rng.choice(ADJECTIVES)} {cat.replace('-', ' ').title()} {rng.choice(NOUNS)}"
        catalog.append({"item_id": f"item-{j:04d}", "title": title, "text": f"{title}: a {cat} course.",
                        "category": cat, "level": rng.randint(1, 3), "private_label": rng.random() < 0.1})
    # power-law popularity over a random order of the items
    order = list(range(n_items))
    rng.shuffle(order)
    weight = [0.0] * n_items
    for rank, j in enumerate(order):
        weight[j] = 1.0 / (rank + 1) ** 1.1
    by_cat: dict[str, list[int]] = {}
    for j, item in enumerate(catalog):
        by_cat.setdefault(item["category"], []).append(j)
    # every item has a few usual companions (same or a favoured neighbouring category)
    companions = {j: rng.sample(by_cat[catalog[j]["category"]], 2) + [rng.randrange(n_items)] for j in range(n_items)}

    users = []
    for u in range(n_users):
        seg = rng.choice(list(SEGMENTS))
        users.append({"user_id": f"user-{u:04d}", "segment": seg, "profession": seg, "level": rng.randint(1, 3)})

    def pick(seg: str) -> int:
        if rng.random() < 0.7:
            pool = by_cat[rng.choice(SEGMENTS[seg])]
            return rng.choices(pool, weights=[weight[j] for j in pool])[0]
        return rng.choices(range(n_items), weights=weight)[0]

    events: list[dict] = []
    start = now - timedelta(days=days)
    for user in users:
        seg = user["segment"]
        for _ in range(max(1, int(rng.expovariate(1 / 4)))):
            t = start + timedelta(seconds=rng.uniform(0, days * 86400 - 3600))
            for _ in range(rng.randint(3, 10)):
                typ = rng.choices([t_ for t_, _ in TYPES], weights=[w for _, w in TYPES])[0]
                item = catalog[pick(seg)]["item_id"]
                ev = {"event_id": f"demo-{len(events)}", "type": typ, "user_id": user["user_id"], "item_id": item,
                      "ts": t.isoformat(), "value": float(rng.randint(3, 5)) if typ == "rate" else None,
                      "context": {"profession": seg}}
                events.append(ev)
                t += timedelta(seconds=rng.uniform(10, 120))
            if rng.random() < 0.25:  # the session ends with a basket
                seed_item = pick(seg)
                lines = {seed_item} | set(rng.sample(companions[seed_item], rng.randint(1, 3)))
                basket = f"b-{len(events)}"
                for j in lines:
                    events.append({"event_id": f"demo-{len(events)}", "type": "purchase", "user_id": user["user_id"],
                                   "item_id": catalog[j]["item_id"], "ts": t.isoformat(), "value": None,
                                   "context": {"basket_id": basket, "profession": seg}})
    events += feedback(events, [c["item_id"] for c in catalog], random.Random(seed + 1))
    events.sort(key=lambda e: e["ts"])
    return DemoData(catalog, users, events)


ARMS = {"hybrid": 1.0, "popularity": 0.7}  # arm -> how much of the good feedback it gets (hybrid does better)
# an experiment `streamrec up --demo` declares (STREAMREC_EXPERIMENTS_FILE), started when the history starts,
# so its report and the dashboard's panel have days of traffic: its arms' lists are labelled {name}.{arm}
DEMO_EXPERIMENT = "demo-ranking"
EXPERIMENT_ARMS = {"control": ("policy", 1.0), "treatment": ("popularity", 0.8)}  # arm -> (strategy, feedback)
COMMENTS = {
    5: ["Exactly what I needed", "Clear and well paced", "Great examples"],
    4: ["Good, a bit long", "Useful, the exercises help"],
    3: ["OK, some parts too basic", "Fine but not new to me"],
    2: ["Not my level", "Too fast in the middle"],
    1: ["Not relevant to me", "Wrong topic"],
}


def feedback(events: list[dict], items: list[str], rng: random.Random) -> list[dict]:
    """The feedback loop's side of the demo (docs/feedback.md), with its own random stream so the
    history above stays as it was: lists served by an arm (impressions) before some clicks and
    enrolments, then likes/dislikes, ratings with comments and aspects, dwell and conversions.
    The hybrid arm gets better feedback, so the per-arm figures differ."""
    out: list[dict] = []

    def add(typ: str, user: str, item: str, at: datetime, **fields) -> None:  # noqa: ANN003
        ctx = fields.pop("context", {})
        out.append({"event_id": f"demo-fb-{len(out)}", "type": typ, "user_id": user, "item_id": item,
                    "ts": at.isoformat(), "value": fields.get("value"), "context": ctx})

    arms = {**ARMS, **{f"{DEMO_EXPERIMENT}.{a}": good for a, (_, good) in EXPERIMENT_ARMS.items()}}
    for ev in [e for e in events if e["type"] in ("click", "enroll")]:
        if rng.random() > 0.6:
            continue
        arm = rng.choice(list(arms))
        good = arms[arm]
        at, user, item = datetime.fromisoformat(ev["ts"]), ev["user_id"], ev["item_id"]
        shown = at - timedelta(seconds=rng.uniform(5, 60))
        request = f"demo-req-{len(out)}"
        for pos, it in enumerate([item] + rng.sample(items, 3)):
            add("impression", user, it, shown, context={"strategy": arm, "request_id": request, "position": pos})
        ctx = {"request_id": request}
        add("dwell", user, item, at + timedelta(seconds=1),
            context={**ctx, "dwell_ms": int(rng.lognormvariate(9 + good, 1.0))})
        roll = rng.random()
        if roll < 0.25 * good:
            add("like", user, item, at + timedelta(seconds=2), context=ctx)
        elif roll < 0.35:
            add("dislike", user, item, at + timedelta(seconds=2), context=ctx)
        if rng.random() < 0.3:
            rating = min(5, max(1, round(rng.gauss(2.8 + 1.5 * good, 1.0))))
            marks = {a: min(5, max(1, rating + rng.choice((-1, 0, 0, 1)))) for a in ("relevance", "quality")}
            note = {"comment": rng.choice(COMMENTS[rating])} if rng.random() < 0.6 else {}
            add("rate", user, item, at + timedelta(seconds=3), value=float(rating),
                context={**ctx, "aspects": marks, **note})
        if rng.random() < 0.1 * good:
            add("convert", user, item, at + timedelta(seconds=4), context=ctx)
    return out


def summary(data: DemoData) -> str:
    n_baskets = len({e["context"].get("basket_id") for e in data.events if e["type"] == "purchase"})
    return (f"{len(data.catalog)} items in {len(CATEGORIES)} categories, {len(data.users)} users in "
            f"{len(SEGMENTS)} segments, {len(data.events)} events, {n_baskets} baskets")


def zipf_check(data: DemoData) -> float:
    """Share of views going to the top 10% of items (a power law puts well over a third there)."""
    counts: dict[str, int] = {}
    for e in data.events:
        counts[e["item_id"]] = counts.get(e["item_id"], 0) + 1
    top = sorted(counts.values(), reverse=True)[: max(1, math.ceil(len(data.catalog) / 10))]
    return sum(top) / sum(counts.values())


def experiment(start: datetime) -> dict:
    """The demo's experiment, as a ``POST /admin/experiments`` body, running since ``start``."""
    return {"name": DEMO_EXPERIMENT, "description": "the run's policy against popularity (the demo's own traffic)",
            "arms": [{"name": a, "share": 0.5, "strategy": strategy} for a, (strategy, _) in EXPERIMENT_ARMS.items()],
            "start": start.timestamp()}
