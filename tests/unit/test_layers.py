"""The layer rule of DESIGN.md, checked on the source: every import of every .py file, read with
``ast`` (so imports inside functions and under ``TYPE_CHECKING`` count too).

- ``trainer/`` never imports ``inference/``;
- ``ranking/`` is pure: of ours it imports only ``schemas`` and ``ranking``, and of the rest
  only the standard library and numpy.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"schemas", "ranking", "streams", "trainer", "inference", "infra", "benchmarks", "tests"}


def py_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(ROOT).parts[:-1])  # the package the file is in (or is, for __init__)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
                # ``from . import x``: x may be a module of the package
                out += [(node.lineno, f"{parent}.{a.name}" if not node.module else parent) for a in node.names]
            else:
                out.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call) and _is_import_call(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((node.lineno, arg.value))
    return out


def _is_import_call(node: ast.Call) -> bool:
    """``importlib.import_module("...")`` or ``__import__("...")``."""
    f = node.func
    return (isinstance(f, ast.Name) and f.id in {"__import__", "import_module"}) or (
        isinstance(f, ast.Attribute) and f.attr == "import_module")


def top(module: str) -> str:
    return module.split(".", 1)[0]


def violations(package: str, allowed) -> list[str]:  # noqa: ANN001
    return [f"{p.relative_to(ROOT)}:{line}: imports {mod}"
            for p in py_files(package) for line, mod in imported_modules(p) if not allowed(mod)]


def test_the_checker_sees_every_form_of_import(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    pkg = tmp_path / "trainer" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text(
        "import os, inference.models\n"
        "from inference import x\n"
        "def f():\n"
        "    from inference.basket.serving import run_cover\n"
        "    import importlib; importlib.import_module('inference.app')\n"
        "from .. import pairs\n"
        "from .other import y\n"
    )
    assert sorted(m for _, m in imported_modules(pkg / "m.py")) == [
        "importlib", "inference", "inference.app", "inference.basket.serving", "inference.models", "os",
        "trainer.pairs", "trainer.sub.other"]
    assert len(violations("trainer", lambda mod: top(mod) != "inference")) == 4


def test_trainer_never_imports_inference():
    assert py_files("trainer"), "no trainer/ sources found"
    bad = violations("trainer", lambda mod: top(mod) != "inference")
    assert not bad, "trainer/ must not import inference/ (DESIGN.md, Settings):\n" + "\n".join(bad)


def _pure(mod: str) -> bool:
    name = top(mod)
    if name in OURS:
        return name in {"schemas", "ranking"}
    return name in sys.stdlib_module_names or name == "numpy"


@pytest.mark.parametrize("mod, ok", [("numpy.linalg", True), ("itertools", True), ("schemas.errors", True),
                                     ("ranking.basket", True), ("inference.basket", False), ("trainer", False),
                                     ("redis", False), ("torch", False), ("pandas", False), ("streams.state", False)])
def test_the_purity_rule(mod, ok):
    assert _pure(mod) is ok


def test_ranking_is_pure():
    assert py_files("ranking"), "no ranking/ sources found"
    bad = violations("ranking", _pure)
    assert not bad, ("ranking/ imports only the standard library, numpy, schemas/ and ranking/ "
                     "(DESIGN.md, Layout):\n" + "\n".join(bad))
