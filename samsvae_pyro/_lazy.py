"""Lazy public names for package ``__init__`` modules (PEP 562), so that importing a package is cheap.

``import samsvae_pyro`` and ``samsvae --help`` need none of torch, Pyro, anndata, scikit-learn or
matplotlib; a name such as ``samsvae_pyro.SAMSVAE`` imports its module on first use.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public ``name`` lives in module ``exports[name]``.

    A name is imported on first access and then cached in the package's namespace.
    """
    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
