"""The README and docs/ stay true to the code: the commands, routes and links they name exist.

A page that names ``streamrec foo`` or ``GET /api/v1/bar`` after the code renamed or dropped
it sends a newcomer into an error; this test catches it when the change is made.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from infra.cli import app as cli_app
from inference.app import create_app
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

COMMAND = re.compile(r"(?<![\w/.-])streamrec ([a-z][a-z-]+)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
ROUTE = re.compile(r"(?<![\w.])(/(?:api/v1|admin)/[A-Za-z0-9_/{}.-]*[A-Za-z0-9_}])")
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")


def _commands() -> set[str]:
    group = typer.main.get_command(cli_app)
    return set(group.commands)


def _routes() -> list[str]:
    # A URL is enough to build the app: nothing connects until the first request.
    settings = Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings)
    # The OpenAPI schema lists the routers' paths; the app's own routes add the hidden ones.
    return [*app.openapi()["paths"], *(getattr(r, "path", "") for r in app.routes)]


def _route_pattern(path: str) -> re.Pattern:
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_command_exists(page):
    known = _commands()
    # Commands are quoted as code; prose and shell comments are not commands.
    code = re.sub(r"(^|\s)#[^\n]*", "", "\n".join(CODE.findall(page.read_text())))
    named = {m.group(1) for m in COMMAND.finditer(code)}
    assert named <= known, f"{page.name} names commands that do not exist: {sorted(named - known)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_route_exists(page):
    routes = [_route_pattern(p) for p in _routes()]
    missing = sorted(
        path for path in {m.group(1).rstrip("/.") for m in ROUTE.finditer(page.read_text())}
        if not any(r.match(path) for r in routes)
        and not any(r.match(re.sub(r"\{[^}]+\}", "x", path)) for r in routes)
    )
    assert not missing, f"{page.name} names routes the API does not have: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = [t for t in LINK.findall(page.read_text()) if not (page.parent / t).exists()]
    assert not broken, f"{page.name} links to missing files: {broken}"
