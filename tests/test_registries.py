"""Each string choice is spelled once: every registry's names are exactly its ``Literal`` in ``_typing``."""

from __future__ import annotations

from typing import get_args

import pytest

from samsvae_pyro import _typing
from samsvae_pyro.api import FAMILIES, PerturbationModel
from samsvae_pyro.data.datasets import REMOTE_FILES
from samsvae_pyro.data.transforms import ATE_METHODS
from samsvae_pyro.evaluate.iwelbo import IWELBO_KINDS
from samsvae_pyro.guides import GUIDES
from samsvae_pyro.infer import ESTIMATORS, WEIGHTINGS
from samsvae_pyro.interpret.similarity import METRICS
from samsvae_pyro.nn.likelihoods import LIKELIHOODS
from samsvae_pyro.runs.interpretation import SOURCES


@pytest.mark.parametrize("registry, choice", [
    (GUIDES, _typing.GuideName), (ESTIMATORS, _typing.EstimatorName), (LIKELIHOODS, _typing.Likelihood),
    (WEIGHTINGS, _typing.Weighting), (ATE_METHODS, _typing.AteMethod), (IWELBO_KINDS, _typing.IwelboKind),
    (METRICS, _typing.SimilarityMetric), (SOURCES, _typing.SimilaritySource), (REMOTE_FILES, _typing.DatasetName),
], ids=lambda value: getattr(value, "__name__", None) or str(value)[:20])
def test_registry_names_are_the_literal_choices(registry, choice):
    assert sorted(registry) == sorted(get_args(choice))


def test_every_literal_of_the_typing_module_is_used_outside_it():
    import pathlib

    import samsvae_pyro

    sources = "\n".join(path.read_text() for path in pathlib.Path(samsvae_pyro.__file__).parent.rglob("*.py")
                        if path.name != "_typing.py")
    literals = [name for name, value in vars(_typing).items() if getattr(value, "__origin__", None) is not None
                and str(value).startswith("typing.Literal")]
    assert literals and [name for name in literals if name not in sources] == []


def test_families_are_every_model_class_under_their_own_name():
    assert set(FAMILIES.values()) == set(PerturbationModel.__subclasses__())
    assert all(name == cls.__name__ for name, cls in FAMILIES.items())
