"""``Annotated`` dependencies of the routes: the process runtime and what it holds."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from inference.basket.service import BasketService
from inference.broker import Broker
from inference.home import HomeService
from inference.runtime import Runtime
from inference.similar import SimilarService


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_broker(rt: RuntimeDep) -> Broker:
    return rt.broker


def get_home(rt: RuntimeDep) -> HomeService:
    return rt.home


def get_similar(rt: RuntimeDep) -> SimilarService:
    return rt.similar


def get_basket(rt: RuntimeDep) -> BasketService:
    return rt.basket


HomeDep = Annotated[HomeService, Depends(get_home)]
SimilarDep = Annotated[SimilarService, Depends(get_similar)]
BasketDep = Annotated[BasketService, Depends(get_basket)]
BrokerDep = Annotated[Broker, Depends(get_broker)]


def require_admin(rt: RuntimeDep, x_admin_key: Annotated[str | None, Header()] = None) -> None:
    """Admin routes need ``X-Admin-Key`` when a key is configured (compared in constant time)."""
    expected = rt.settings.admin_key
    if not expected:
        return
    if x_admin_key is None or not hmac.compare_digest(x_admin_key.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="admin routes need a valid X-Admin-Key header")


AdminDep = Depends(require_admin)
