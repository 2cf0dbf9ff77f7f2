"""Run one Faust worker of streamrec (consumer group = ``Settings.worker_id``).

``streamrec worker`` and ``python -m streams`` both end here. Blocking; SIGTERM / SIGINT stop it
cleanly (Faust's worker installs the handlers and commits what was acknowledged).
"""
from __future__ import annotations

import asyncio
import gc
import logging

from schemas.errors import ServiceUnavailable
from schemas.settings import Settings
from streams import metrics
from streams.admin import ensure_topics

log = logging.getLogger(__name__)


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional speed-up
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(settings: Settings) -> None:
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise ServiceUnavailable(
            "the worker needs STREAMREC_KAFKA_BOOTSTRAP and STREAMREC_REDIS_URL "
            "(or run the whole stack with `streamrec up`)"
        )
    import faust

    from streams.app import build_app

    (settings.data_dir / "faust" / settings.worker_id).mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(settings))  # before Faust subscribes, with the configured partitions
    metrics.serve(settings.worker_metrics_port, settings.worker_metrics_host)
    _use_uvloop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = build_app(settings)
    # everything imported and built so far lives as long as the process: out of the collector's
    # sight, a full collection no longer walks it (a pause of tens of ms in the middle of a batch)
    gc.freeze()
    worker = faust.Worker(app, loop=loop, loglevel="WARNING", quiet=True, redirect_stdouts=False,
                          override_logging=False)
    log.info("worker %s consuming %s from %s into %s", settings.worker_id,
             settings.topic("interactions"), settings.kafka_bootstrap, settings.redis_url)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
