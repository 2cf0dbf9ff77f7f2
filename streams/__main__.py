"""``python -m streams``: one worker, configured from ``STREAMREC_*`` (as ``streamrec worker``)."""
import logging

from schemas.settings import get_settings
from streams.worker import run

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(get_settings())
