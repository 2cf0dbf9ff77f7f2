"""The active basket profile: process state of the API.

The profile file, its buckets and ``BasketParams`` are ``schemas.basket_profiles`` (the
trainer's evaluation loads them too); this module only keeps which profile this process
serves, switched by ``set_active`` (``POST /admin/reload {"profile": ...}``) and shown by
``active()``.

``tuned`` (the default) names the policy tuned on the serving run's own baskets
(``basket_policy.json``, ``trainer.basket_tuning``); the caller passes it in. Without one
(no run, or a run without baskets) the shipped ``precision`` profile serves in its place.

>>> configure(None, "precision"); active(), active_params(1)[1].W_POPG
('precision', 0.12)
>>> configure(None, "tuned"); active_params(1)[0], active_params(1, {"default": {"W_POPG": 0.5}})[1].W_POPG
('precision', 0.5)
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from schemas.basket_profiles import SHIPPED, TUNED, BasketParams, load_profiles, params_for
from schemas.errors import UnknownBasketProfile

#: What serves for ``tuned`` when the serving run has no tuned policy.
FALLBACK = "precision"

__all__ = ["FALLBACK", "SHIPPED", "TUNED", "active", "active_params", "configure", "ensure_configured", "load_profiles", "names",
           "set_active"]

_lock = threading.Lock()
_state: dict[str, Any] = {"path": None, "profiles": None, "active": None}


def configure(path: Path | None, name: str) -> None:
    """Load ``path`` (None: the shipped file) and make ``name`` active; raise on bad input
    (``BadBasketProfile``, a ``ValueError``; ``UnknownBasketProfile``, a ``KeyError``)."""
    profiles = load_profiles(path)
    if name not in profiles and name != TUNED:
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


def active_params(n: int, tuned: dict | None = None) -> tuple[str, BasketParams]:
    """The active profile's name and its parameters for a basket of ``n`` items; ``tuned`` is
    the serving run's tuned profile (None: it has none)."""
    _ensure()
    with _lock:
        name, profiles = _state["active"], _state["profiles"]
    if name == TUNED:
        if tuned is not None:
            return TUNED, params_for(tuned, n, where=f"{TUNED} profile")
        name = FALLBACK if FALLBACK in profiles else sorted(profiles)[0]
    return name, params_for(profiles[name], n)


def names() -> list[str]:
    _ensure()
    return sorted({*_state["profiles"], TUNED})
