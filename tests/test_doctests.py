"""Every docstring example of the package runs: the modules are found by walking the package, not listed."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import samsvae_pyro


def modules_with_examples() -> list[str]:
    """Every module of the package whose source holds a ``>>>`` example (found without importing it)."""
    names = [samsvae_pyro.__name__] + [info.name for info in pkgutil.walk_packages(samsvae_pyro.__path__,
                                                                                  prefix="samsvae_pyro.")]
    return [name for name in names if ">>> " in Path(importlib.util.find_spec(name).origin).read_text()]


def test_the_walk_finds_examples_on_every_floor():
    found = modules_with_examples()
    for package in ("api", "data", "evaluate", "interpret", "runs"):
        assert any(name.startswith(f"samsvae_pyro.{package}.") or name == f"samsvae_pyro.{package}" for name in found)


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
