"""The plate table of a model's docstring, read back for the tests (one parser for every family)."""

from __future__ import annotations

import re

from pyro import poutine

from samsvae_pyro.models.plates import particles_plate

ROW = re.compile(r"^\s+(\w+)\s+(\w+) \((-\d)\)\s+\((\w*),?\)", re.M)


def plate_table(model_class: type) -> dict[str, tuple[str, int, str]]:
    """Rows site -> (plate, dim, event letter) parsed from a model class docstring's plate table."""
    return {site: (plate, int(dim), letter) for site, plate, dim, letter in ROW.findall(model_class.__doc__)}


def traced(model, batch, n_particles: int):
    """Trace of ``model(batch)`` with ``n_particles`` particles."""
    with particles_plate(n_particles):
        return poutine.trace(model).get_trace(batch)
