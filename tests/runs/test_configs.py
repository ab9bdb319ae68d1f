"""Every file in configs/ runs end to end for a couple of steps on small schema-faithful inputs, with
every value its sweep lists (variants, fractions, encodings, seeds) used at least once, so that no
config can rot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from samsvae_pyro.runs import load_config, plan_sweep, resolve_config, run_config
from tests.runs.conftest import SMOKE

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_the_paper_configs_are_there():
    names = {path.stem for path in CONFIGS}
    assert {"demo", "replogle_filtered", "norman_ood", "norman_data_efficiency", "paper_simulation"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_config_runs_end_to_end(path, small_inputs, tmp_path):
    config = load_config(path)
    overrides = {**SMOKE, **small_inputs[config["data"]["source"]]}
    runs = plan_sweep(config, overrides, covering=True) if "sweep" in config else None
    resolved = [run.config for run in runs] if runs else [resolve_config(config, overrides)]
    for i, run in enumerate(resolved):
        run_dir = tmp_path / str(i)
        metrics = run_config(run, run_dir, progress=False)
        assert metrics["model"]["class"] == run["model"]["class"] and metrics["model"]["trained_steps"] == 2
        assert math.isfinite(metrics["iwelbo"]["mean"]) and "skipped" not in metrics["ate"]
        assert yaml.safe_load((run_dir / "experiment.yaml").read_text())["train"]["max_steps"] == 2
        for name in ("checkpoint.pt", "config.json", "history.csv", "metrics.md", "iwelbo_per_cell.csv"):
            assert (run_dir / name).is_file(), name
    if runs:  # every listed value of every sweep key was used
        for key, values in config["sweep"]["grid"].items():
            assert {repr(run.settings[key]) for run in runs} == {repr(value) for value in values}
