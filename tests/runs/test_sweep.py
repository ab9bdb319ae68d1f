"""Sweeps: grid expansion, validation of the sweep section, aggregation (mean +- sd, relative IWELBO
against the reference run of the same split seed) on hand-made run directories, and a real two-run
sweep over a process pool that a second call reuses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from samsvae_pyro.runs import expand_grid, load_config, plan_sweep, relative_iwelbo, run_sweep
from samsvae_pyro.runs.sweep import SweepRun, runs_table, sweep_section, write_summary
from tests.runs.conftest import SMOKE
from tests.runs.test_config import DEMO


def test_grid_product_and_covering_subset():
    grid = {"variant": ["a", "b"], "data.split.seed": [0, 1, 2]}
    full = expand_grid(grid)
    assert len(full) == 6 and full[0] == {"variant": "a", "data.split.seed": 0}
    assert full[1] == {"variant": "a", "data.split.seed": 1}  # the last key varies fastest
    covering = expand_grid(grid, covering=True)
    assert len(covering) == 3
    assert {run["variant"] for run in covering} == {"a", "b"} and [run["data.split.seed"] for run in covering] == [0, 1, 2]


@pytest.mark.parametrize("sweep, message", [
    (None, "no sweep.grid"),
    ({"grid": {"variant": []}}, "sweep.grid.variant should be a non-empty list"),
    ({"grid": {"variant": ["a"]}, "replicates": ["train.seed"]}, "'train.seed' .* is not a key of sweep.grid"),
    ({"grid": {"variant": ["a"]}, "reference": {"variant": "b"}}, r"sweep.reference.variant='b' is not among"),
    ({"grid": {"variant": ["a"]}, "repeats": 3}, "unknown key 'repeats' in section sweep"),
])
def test_sweep_section_errors(sweep, message):
    with pytest.raises(ValueError, match=message):
        sweep_section({"sweep": sweep})


def test_an_override_cannot_fix_a_grid_key():
    with pytest.raises(ValueError, match="override variant is a key of sweep.grid"):
        plan_sweep(load_config(DEMO), {"variant": "cpa_vae"})


def _fake_run(run_dir, iwelbo_cells, ate_r):
    """A run directory with the two files the tables read."""
    run_dir.mkdir(parents=True)
    cells = pd.Series(iwelbo_cells, index=[f"c{i}" for i in range(len(iwelbo_cells))], name="iwelbo")
    cells.rename_axis("cell").to_frame().to_csv(run_dir / "iwelbo_per_cell.csv")
    scores = {"pearson": ate_r, "pearson_top20": ate_r / 2}
    metrics = {"model": {"class": "M", "guide": "g"}, "settings": {"top_k": 20},
               "iwelbo": {"mean": float(np.mean(iwelbo_cells))},
               "ate": {"model": {"all": scores, "test": scores}}, "truth": {"skipped": "none"}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_summary_mean_sd_and_relative_iwelbo_per_split_seed(tmp_path):
    config = {"sweep": {"grid": {"variant": ["a", "b"], "seed": [0, 1]}, "replicates": ["seed"],
                        "reference": {"variant": "a"}}}
    cells = {("a", 0): [-10, -12], ("b", 0): [-8, -10], ("a", 1): [-20, -20], ("b", 1): [-15, -19]}
    runs = []
    for (variant, seed), values in cells.items():
        name = f"{variant}{seed}"
        _fake_run(tmp_path / "runs" / name, values, ate_r=0.5 + 0.1 * seed)
        runs.append(SweepRun(name, {"variant": variant, "seed": seed}, {}))
    frame = runs_table(runs, tmp_path / "runs", {run.name: "ok" for run in runs}, config)
    assert frame.loc["b0", "relative IWELBO"] == pytest.approx(2.0)  # -9 - (-11), same seed
    assert frame.loc["b1", "relative IWELBO"] == pytest.approx(3.0)  # -17 - (-20)
    summary = write_summary(frame, config, tmp_path).set_index("variant")
    assert summary.loc["b", "n"] == 2
    assert summary.loc["b", "relative IWELBO mean"] == pytest.approx(2.5)
    assert summary.loc["b", "relative IWELBO sd"] == pytest.approx(np.sqrt(0.5))
    assert summary.loc["a", "IWELBO mean"] == pytest.approx(-15.5) and summary.loc["a", "ATE r test mean"] == 0.55
    markdown = (tmp_path / "summary.md").read_text()
    assert "| b | M (g) | 2 | -13.00 ± 5.66 | 2.50 ± 0.71 |" in markdown
    assert "Relative IWELBO: run minus the run with variant=a" in markdown
    assert pd.read_csv(tmp_path / "summary.csv").shape[0] == 2


def test_relative_iwelbo_needs_the_same_cells(tmp_path):
    _fake_run(tmp_path / "x", [-1.0, -2.0], 0.1)
    _fake_run(tmp_path / "y", [-1.0, -2.0, -3.0], 0.1)
    with pytest.raises(ValueError, match="different cells; compare runs of the same split"):
        relative_iwelbo(tmp_path / "x", tmp_path / "y")


def test_sweep_over_processes_then_reused(small_inputs, tmp_path):
    config = load_config(DEMO)
    config["sweep"] = {"grid": {"variant": ["sams_vae_correlated", "cpa_vae"]},
                       "reference": {"variant": "sams_vae_correlated"}}
    overrides = {**SMOKE, **small_inputs["simulate_counts"]}
    runs, summary = run_sweep(config, tmp_path, overrides=overrides, jobs=2, threads=1, progress=False)
    assert list(runs["status"]) == ["ok", "ok"] and list(summary["variant"]) == ["sams_vae_correlated", "cpa_vae"]
    assert summary["relative IWELBO mean"].iloc[0] == 0.0 and np.isfinite(summary["relative IWELBO mean"].iloc[1])
    checkpoint = tmp_path / "runs" / "cpa_vae" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    again, _ = run_sweep(config, tmp_path, overrides=overrides, progress=False)
    assert list(again["status"]) == ["reused", "reused"] and checkpoint.stat().st_mtime_ns == written
    pd.testing.assert_frame_equal(again.drop(columns="status"), runs.drop(columns="status"))
    with pytest.raises(ValueError, match="holds a run of a different config.*--overwrite"):
        run_sweep(config, tmp_path, overrides={**overrides, "train.seed": 1}, progress=False)
