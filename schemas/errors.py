"""The streamrec exception tree.

    StreamrecError
    ├── InvalidEvent            a record failed validation (goes to the DLQ, never stops a worker)
    ├── NotFound                an unknown item, run or user where one is required
    │   └── UnknownBasketProfile    no basket profile of that name (also a KeyError)
    ├── ModelNotTrained         a model strategy was asked for and no run serves it
    ├── ArtifactError           a run directory is incomplete or unreadable
    ├── InvalidDataset          an interactions file or snapshot cannot be read as a dataset
    │   └── BadBasketFile       a basket file without the columns its format needs (also a ValueError)
    ├── BadBasketProfile        a basket profile file or bucket that cannot be used (also a ValueError)
    ├── ScriptRejected          Redis refused the streams' script for a batch (e.g. WRONGTYPE): not transient
    └── ServiceUnavailable      a backing service cannot be reached
        ├── BrokerUnavailable   Kafka (mapped from aiokafka / confluent errors at the boundary)
        └── StoreUnavailable    Redis (mapped from redis-py errors at the boundary)

Lower layers raise these; only the API routes turn them into HTTP answers
(4xx for the first group, 503 for ServiceUnavailable). The ones marked "also a ...Error"
keep the built-in base they had before they joined the tree, so ``except ValueError`` /
``except KeyError`` callers still catch them.
"""
from __future__ import annotations


class StreamrecError(Exception):
    """Base of every error streamrec raises on purpose."""


class InvalidEvent(StreamrecError):
    """A record that cannot be processed; ``reason`` says why in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotFound(StreamrecError):
    pass


class ModelNotTrained(StreamrecError):
    def __init__(self, strategy: str):
        super().__init__(
            f"model not trained yet: no serving run has a '{strategy}' model; "
            f"train one with `streamrec train --model {strategy}`"
        )
        self.strategy = strategy


class ArtifactError(StreamrecError):
    pass


class InvalidDataset(StreamrecError):
    """A training data source that cannot be used (missing columns, unknown format, no rows)."""


class BadBasketFile(InvalidDataset, ValueError):
    """A basket file (``baskets`` / ``basket-lines``) whose header lacks what its format needs."""


class UnknownBasketProfile(NotFound, KeyError):
    """No basket profile of that name in the profile file."""


class BadBasketProfile(StreamrecError, ValueError):
    """A basket profile file that cannot be read, or a bucket with an unknown or bad parameter."""


class ScriptRejected(StreamrecError):
    """Redis refused the script for this batch (e.g. WRONGTYPE on a key): not a transient error."""


class ServiceUnavailable(StreamrecError):
    retry_after_s = 5


class BrokerUnavailable(ServiceUnavailable):
    pass


class StoreUnavailable(ServiceUnavailable):
    pass


class InsecureConfiguration(StreamrecError, ValueError):
    """A part that must not run unprotected was started without its secret (the API without
    ``STREAMREC_ADMIN_KEY``, unless ``STREAMREC_ALLOW_INSECURE=1``)."""
