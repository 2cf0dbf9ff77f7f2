"""The streamrec exception tree.

    StreamrecError
    ├── InvalidEvent            a record failed validation (goes to the DLQ, never stops a worker)
    ├── NotFound                an unknown item, run or user where one is required
    ├── ModelNotTrained         a model strategy was asked for and no run serves it
    ├── ArtifactError           a run directory is incomplete or unreadable
    ├── InvalidDataset          an interactions file or snapshot cannot be read as a dataset
    └── ServiceUnavailable      a backing service cannot be reached
        ├── BrokerUnavailable   Kafka (mapped from aiokafka / confluent errors at the boundary)
        └── StoreUnavailable    Redis (mapped from redis-py errors at the boundary)

Lower layers raise these; only the API routes turn them into HTTP answers
(4xx for the first group, 503 for ServiceUnavailable).
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


class ServiceUnavailable(StreamrecError):
    retry_after_s = 5


class BrokerUnavailable(ServiceUnavailable):
    pass


class StoreUnavailable(ServiceUnavailable):
    pass
