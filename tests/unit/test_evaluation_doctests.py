"""The doctests of the model and evaluation modules (pytest's testpaths is tests/ only)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "trainer.base", "trainer.splits", "trainer.evaluation", "trainer.device",
    "trainer.models", "trainer.models._features", "trainer.models._training", "trainer.models._item_item",
    "trainer.models.blend", "trainer.models.lightfm_model", "trainer.models.two_tower",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
