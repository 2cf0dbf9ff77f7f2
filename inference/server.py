"""``inference.server.run(settings)``: the API under uvicorn, blocking (``streamrec api``/``up``)."""
from __future__ import annotations

import logging

from schemas.settings import Settings


def run(settings: Settings) -> None:
    import uvicorn

    from inference.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # one request thread for torch: the event loop, not BLAS, is the unit of concurrency here
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools", lifespan="on", timeout_graceful_shutdown=5)
