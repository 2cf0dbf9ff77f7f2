"""Producer keys: identification by hash, scopes, and the per-key token bucket."""
from __future__ import annotations

import pytest
from fastapi import HTTPException

from inference.security import KeyRing
from schemas.security import ApiKeySpec, hash_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ring(clock=None) -> KeyRing:
    specs = [ApiKeySpec(name="a", sha256=hash_key("ka"), scopes=["events"], writes_per_s=2, burst=2),
             ApiKeySpec(name="b", sha256=hash_key("kb"), scopes=["read", "feedback"])]
    return KeyRing(specs, clock=clock or Clock())


def test_keys_are_identified_by_their_hash_and_scoped():
    r = ring()
    assert r.identify("ka").name == "a" and r.identify("kb").name == "b"
    assert r.identify("kc") is None and r.identify("") is None and r.identify(None) is None
    assert r.allows("kb", "read") and not r.allows("ka", "read")


def test_the_bucket_refills_at_the_key_rate():
    clock = Clock()
    r = ring(clock)
    assert r.check("ka", "events").name == "a" and r.check("ka", "events").name == "a"  # the burst of 2
    with pytest.raises(HTTPException) as exc:
        r.check("ka", "events")
    assert exc.value.status_code == 429 and exc.value.headers["Retry-After"] == "1"
    clock.now += 0.5  # 2 writes/s: one token back
    assert r.check("ka", "events") is not None
    # reads are not rate-limited, and another key has its own bucket
    for _ in range(500):
        r.check("kb", "read")


def test_errors_name_the_missing_scope_and_never_the_key():
    r = ring()
    with pytest.raises(HTTPException) as exc:
        r.check("ka", "read")
    assert exc.value.status_code == 403 and "ka" not in exc.value.detail and "'read'" in exc.value.detail
    with pytest.raises(HTTPException) as exc:
        r.check(None, "read")
    assert exc.value.status_code == 401


def test_without_keys_everything_is_open():
    assert KeyRing([]).check(None, "events") is None
