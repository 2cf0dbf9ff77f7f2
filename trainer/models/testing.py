"""A small dataset with a known answer, for the shared model tests (and quick demos).

Two taste groups: users u0..u19 interact only with items i0..i14 ("alpha" films),
users u20..u39 only with i15..i29 ("beta" films). Every sensible model must recommend a
user unseen items of their own group; item metadata (title words, category) and user
metadata (segment) say the same thing, so feature-based models can learn it too.
Item popularity falls with the item number inside each group (i0 and i15 are the most popular).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trainer.data.interactions import Interactions

N_USERS, N_ITEMS, GROUP = 40, 30, 15


def group_of_user(u: str) -> int:
    return int(u[1:]) // 20


def group_of_item(i: str) -> int:
    return int(i[1:]) // GROUP


def synthetic_events(seed: int = 0, per_user: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    weights = 1.0 / np.arange(1, GROUP + 1)
    weights /= weights.sum()
    for u in range(N_USERS):
        g = u // 20
        items = rng.choice(GROUP, size=per_user, replace=False, p=weights) + g * GROUP
        for t, i in enumerate(items):
            rows.append({"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1_700_000_000 + 60 * (u * 10 + t),
                         "type": "rate", "value": float(rng.integers(3, 6))})
    return pd.DataFrame(rows)


def item_meta() -> pd.DataFrame:
    ids = [f"i{i}" for i in range(N_ITEMS)]
    return pd.DataFrame({
        "title": [("alpha film" if i < GROUP else "beta movie") + f" number{i}" for i in range(N_ITEMS)],
        "category": ["Drama|Alpha" if i < GROUP else "Comedy|Beta" for i in range(N_ITEMS)],
    }, index=ids)


def user_meta() -> pd.DataFrame:
    return pd.DataFrame({"segment": ["a" if u < 20 else "b" for u in range(N_USERS)],
                         "profession": ["writer" if u % 2 else "engineer" for u in range(N_USERS)]},
                        index=[f"u{u}" for u in range(N_USERS)])


def synthetic_interactions(seed: int = 0) -> Interactions:
    return Interactions.from_events(synthetic_events(seed), item_meta=item_meta(), user_meta=user_meta())


# Small, fast settings for every model (epochs are constructor arguments so tests train in seconds).
FAST_PARAMS: dict[str, dict] = {
    "ncf": {"embedding_dim": 16, "mlp_layers": [32, 16], "batch_size": 64, "epochs": 25, "lr": 5e-3,
            "val_fraction": 0.0, "threads": 1, "device": "cpu"},
    "two_tower": {"embedding_dim": 16, "tower_layers": [32, 16], "batch_size": 32, "epochs": 25, "lr": 5e-3,
                  "temperature": 0.1, "val_fraction": 0.0, "threads": 1, "device": "cpu"},
    "lightfm": {"no_components": 16, "epochs": 30},
    "multvae": {"latent_dim": 16, "epochs": 60, "batch_size": 16, "ensemble": 2, "lr": 1e-2, "threads": 1, "device": "cpu"},
    "ease": {"lambda_": 5.0},
    "itemknn": {"neighbors": 10},
    "rp3beta": {"neighbors": 10},
    "blend": {"components": [{"model": "ease", "weight": 1.0, "params": {"lambda_": 5.0}},
                             {"model": "itemknn", "weight": 0.5, "params": {"neighbors": 10}}]},
}
