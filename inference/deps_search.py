"""The search service as a route dependency (it lives on the app's state: ``inference.app``)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from inference.search import SearchService


def get_search(request: Request) -> SearchService:
    return request.app.state.search


SearchDep = Annotated[SearchService, Depends(get_search)]
