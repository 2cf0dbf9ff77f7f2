"""Producer API keys: how they are configured (hashed, with scopes and a write rate).

A key is never stored: the settings hold its SHA-256 (``STREAMREC_API_KEYS``, JSON), and a
request's ``X-Api-Key`` is hashed and compared with each configured hash in constant time.
``streamrec keys new NAME --scope events`` makes a key and prints the entry to configure.

>>> spec = ApiKeySpec(name="shop", sha256=hash_key("s3cret"), scopes=["events", "read"])
>>> spec.allows("events"), spec.allows("feedback")
(True, False)
>>> ApiKeySpec(name="x", sha256="abc", scopes=["events"])
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for ApiKeySpec
sha256
  String should match pattern '^[0-9a-f]{64}$' [type=string_pattern_mismatch, input_value='abc', input_type=str]
    For further information visit https://errors.pydantic.dev/2.14/v/string_pattern_mismatch
"""
from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field

#: what a producer key may do: send events, send feedback, read recommendations and stats
Scope = Literal["events", "feedback", "read"]
SCOPES: tuple[str, ...] = ("events", "feedback", "read")


class ApiKeySpec(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")  # shows in logs, never the key
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)
    writes_per_s: float = Field(100.0, gt=0)  # events/feedback requests per second, per API process
    burst: int = Field(200, ge=1)  # writes allowed at once before the rate applies

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
