"""The active basket profile: process state of the API.

The profile file, its buckets and ``BasketParams`` are ``schemas.basket_profiles`` (the
trainer's evaluation loads them too); this module only keeps which profile this process
serves, switched by ``set_active`` (``POST /admin/reload {"profile": ...}``) and shown by
``active()``.

>>> configure(None, "precision"); active(), active_params(1)[1].W_POPG
('precision', 0.12)
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from schemas.basket_profiles import SHIPPED, BasketParams, load_profiles, params_for
from schemas.errors import UnknownBasketProfile

__all__ = ["SHIPPED", "active", "active_params", "configure", "ensure_configured", "load_profiles", "names",
           "set_active"]

_lock = threading.Lock()
_state: dict[str, Any] = {"path": None, "profiles": None, "active": None}


def configure(path: Path | None, name: str) -> None:
    """Load ``path`` (None: the shipped file) and make ``name`` active; raise on bad input
    (``BadBasketProfile``, a ``ValueError``; ``UnknownBasketProfile``, a ``KeyError``)."""
    profiles = load_profiles(path)
    if name not in profiles:
        raise UnknownBasketProfile(f"no profile {name!r} in {path or SHIPPED} (have {sorted(profiles)})")
    with _lock:
        _state.update(path=path, profiles=profiles, active=name)


def _ensure() -> None:
    if _state["profiles"] is None:
        from schemas.settings import get_settings

        s = get_settings()
        configure(s.basket_profiles_file, s.basket_profile)


def ensure_configured(path: Path | None, name: str) -> None:
    """Configure from settings once (later ``set_active`` calls win)."""
    if _state["profiles"] is None:
        configure(path, name)


def set_active(name: str) -> str:
    """Switch the active profile; the file is re-read so edits take effect too."""
    _ensure()
    configure(_state["path"], name)
    return name


def active() -> str:
    _ensure()
    return _state["active"]


def active_params(n: int) -> tuple[str, BasketParams]:
    """The active profile's name and its parameters for a basket of ``n`` items."""
    _ensure()
    with _lock:
        name, profiles = _state["active"], _state["profiles"]
    return name, params_for(profiles[name], n)


def names() -> list[str]:
    _ensure()
    return sorted(_state["profiles"])
