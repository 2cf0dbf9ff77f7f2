"""Helpers to run the API in tests and benchmarks: in-process (ASGI), under a real uvicorn
thread, and a tiny trained run to serve. Nothing here fakes Redis or the broker."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import numpy as np
import pandas as pd

from schemas.settings import Settings

N_CATEGORIES = 5


def synthetic_events(n_users: int = 60, n_items: int = 50, per_user: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events where each user prefers one category, plus the item metadata (title, category)."""
    rng = np.random.default_rng(seed)
    items = [f"i{j}" for j in range(n_items)]
    cats = [f"c{j % N_CATEGORIES}" for j in range(n_items)]
    meta = pd.DataFrame({"title": [f"Item {j}" for j in range(n_items)], "category": cats, "text": cats}, index=items)
    rows = []
    for u in range(n_users):
        fav = u % N_CATEGORIES
        pool = [j for j in range(n_items) if j % N_CATEGORIES == fav]
        other = [j for j in range(n_items) if j % N_CATEGORIES != fav]
        picks = list(rng.choice(pool, size=min(per_user - 3, len(pool)), replace=False)) + list(rng.choice(other, 3, replace=False))
        for t, j in enumerate(picks):
            rows.append((f"u{u}", items[j], 1_700_000_000 + t, "view"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "type"]), meta


def train_tiny_run(artifact_dir: Path, models: tuple[str, ...] = ("ncf", "two_tower", "ease"), tag: str = "tiny",
                   make_current: bool = True, seed: int = 0) -> Path:
    """Train small models on ``synthetic_events`` and save them as a complete run."""
    from trainer.artifacts import new_run_dir, save_run, set_current
    from trainer.data.interactions import Interactions
    from trainer.models import make_model

    small = {
        "ncf": {"embedding_dim": 8, "mlp_layers": [16, 8], "epochs": 2, "patience": None},
        "two_tower": {"embedding_dim": 8, "tower_layers": [16], "epochs": 2, "patience": None, "val_fraction": 0.0},
    }
    events, meta = synthetic_events(seed=seed)
    data = Interactions.from_events(events, item_meta=meta)
    fitted = {}
    for name in models:
        params = dict(small.get(name, {}))
        try:
            model = make_model(name, **params)
        except TypeError:  # a model without one of the small knobs
            model = make_model(name)
        fitted[name] = model.fit(data)
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run = save_run(new_run_dir(artifact_dir, tag), fitted, {"primary": "ndcg@10"})
    if make_current:
        set_current(artifact_dir, run)
    return run


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[tuple[object, object]]:
    """(app, httpx.AsyncClient) with the app's lifespan running, in this event loop."""
    import httpx

    from inference.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=10) as client:
            yield app, client


@contextlib.contextmanager
def uvicorn_thread(settings: Settings, port: int | None = None) -> Iterator[str]:
    """The API under a real uvicorn server in a thread; yields its base URL."""
    import uvicorn

    from inference.app import create_app
    from infra.stack import free_port

    port = port or free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the API did not start in 30 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
