"""The docstring examples of the evaluation modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["ate", "metrics", "mask_metrics"])
def test_docstring_examples(name):
    module = importlib.import_module(f"samsvae_pyro.evaluate.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
