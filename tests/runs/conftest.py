"""Tiny inputs for every data source a config can name, and overrides that shrink any config to a
few-second run (2 steps, a handful of evaluation samples, no plots)."""

from __future__ import annotations

import pytest

from tests.schema_files import write_norman_file, write_replogle_file

SINGLES = ("CBL", "CEBPB", "CNN1", "KLF1", "FOXA1")
PAIRS = ("CBL+CNN1", "CEBPB+CBL", "KLF1+FOXA1", "CNN1+KLF1", "CEBPB+FOXA1", "CBL+KLF1", "CNN1+FOXA1",
         "CEBPB+KLF1")
SMOKE = {"train.max_steps": 2, "evaluate.n_particles": 2, "evaluate.ate_draws": 2,
         "evaluate.ate_samples_per_draw": 2, "evaluate.plots": False}


@pytest.fixture(scope="session")
def small_inputs(tmp_path_factory) -> dict[str, dict]:
    """Overrides per ``data.source`` that point a config at a small schema-faithful file or simulation."""
    folder = tmp_path_factory.mktemp("schema_files")
    norman, replogle = folder / "norman.h5ad", folder / "replogle_filtered.h5ad"
    write_norman_file(norman, conditions=("control",) + SINGLES + PAIRS, cells_per_condition=10, n_genes=48)
    write_replogle_file(replogle, n_targets=4, cells=12, n_controls=24, n_genes=24)
    return {
        "norman": {"data.path": str(norman)},
        "replogle": {"data.path": str(replogle)},
        "h5ad": {"data.path": str(replogle)},
        "simulate_paper": {"data.simulate.n_perturbations": 4, "data.simulate.cells_per_perturbation": [20, 6, 6]},
        "simulate_counts": {"data.simulate.n_perturbations": 4, "data.simulate.cells_per_perturbation": 30,
                            "data.simulate.n_double": 4, "data.simulate.n_ate_samples": 50},
    }
