"""``inference.server.run(settings)``: the API under uvicorn, blocking (``streamrec api``/``up``)."""
from __future__ import annotations

import logging

from schemas.errors import InsecureConfiguration
from schemas.settings import Settings


def check_secure(settings: Settings) -> None:
    """The API does not start with its admin routes open, unless asked to."""
    if not settings.admin_key and not settings.allow_insecure:
        raise InsecureConfiguration(
            "the API needs an admin key: set STREAMREC_ADMIN_KEY (or STREAMREC_ALLOW_INSECURE=1 to run "
            "with the admin routes open; `streamrec up` makes a key in its data dir)")


def run(settings: Settings, workers: int = 1) -> None:
    """Serve until stopped. ``workers`` > 1: that many processes on one port (uvicorn's
    workers, each building the app from the environment with ``inference.app:factory``);
    admin changes reach all of them over ``inference.control``."""
    import uvicorn

    check_secure(settings)
    if workers > 1:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        uvicorn.run("inference.app:factory", factory=True, workers=workers, host=settings.api_host,
                    port=settings.api_port, log_level="warning", access_log=False, loop="uvloop", http="httptools",
                    lifespan="on", timeout_graceful_shutdown=5)
        return

    from inference.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # one request thread for torch: the event loop, not BLAS, is the unit of concurrency here
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools", lifespan="on", timeout_graceful_shutdown=5)
