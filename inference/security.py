"""Producer keys on the HTTP API: who may send events, send feedback, or read.

With no key configured (``STREAMREC_API_KEYS`` empty) the public routes stay open, as before.
With keys, each public route needs an ``X-Api-Key`` whose scope covers it (401 without a
key or with an unknown one, 403 when the scope is missing), and writes are rate-limited per
key (429 with ``Retry-After``). The key is hashed and compared with every configured hash in
constant time; only the key's *name* is ever logged.

The rate is per API process (a token bucket in memory): N replicas allow N times the rate.
"""
from __future__ import annotations

import hmac
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from schemas.security import ApiKeySpec, hash_key

log = logging.getLogger(__name__)

WRITE_SCOPES = frozenset({"events", "feedback"})


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class KeyRing:
    specs: list[ApiKeySpec]
    clock: object = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.specs)

    def identify(self, key: str | None) -> ApiKeySpec | None:
        """The spec of ``key``, comparing its hash with every configured one (no early exit)."""
        if not key:
            return None
        digest = hash_key(key).encode()
        found = None
        for spec in self.specs:
            if hmac.compare_digest(digest, spec.sha256.encode()):
                found = spec
        return found

    def allows(self, key: str | None, scope: str) -> bool:
        spec = self.identify(key)
        return spec is not None and spec.allows(scope)

    def take(self, spec: ApiKeySpec) -> float:
        """Spend one write; 0 when allowed, else the seconds until the next one is."""
        now = self.clock()
        bucket = self._buckets.get(spec.name)
        if bucket is None:
            bucket = self._buckets[spec.name] = _Bucket(float(spec.burst), now)
        bucket.tokens = min(float(spec.burst), bucket.tokens + (now - bucket.at) * spec.writes_per_s)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / spec.writes_per_s

    def check(self, key: str | None, scope: str) -> ApiKeySpec | None:
        """Raise the HTTP error for a request of ``scope`` with ``key``; None when keys are off."""
        if not self.enabled:
            return None
        spec = self.identify(key)
        if spec is None:
            raise HTTPException(401, detail="this route needs a valid X-Api-Key header",
                                headers={"WWW-Authenticate": "X-Api-Key"})
        if not spec.allows(scope):
            log.info("key %s refused: no %r scope", spec.name, scope)
            raise HTTPException(403, detail=f"this key has no {scope!r} scope (it has: {', '.join(spec.scopes)})")
        if scope in WRITE_SCOPES:
            wait = self.take(spec)
            if wait > 0:
                raise HTTPException(429, detail=f"key {spec.name!r} is over its rate of {spec.writes_per_s:g} writes/s",
                                    headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return spec


def _keyring(request: Request) -> KeyRing:
    return request.app.state.runtime.api_keys


def require_scope(scope: str):
    """A route (or router) dependency: the request's ``X-Api-Key`` must cover ``scope``."""

    def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
        _keyring(request).check(x_api_key, scope)

    check.__name__ = f"require_{scope}_scope"
    return Depends(check)
