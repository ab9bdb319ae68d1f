"""The ``samsvae`` command line, run as a user runs it (``python -m samsvae_pyro.cli ...`` in a subprocess).

The end-to-end paths and one user error per command run in subprocesses; the per-command help pages
and further user errors run ``main(argv)`` in-process, which is the same code path without paying the
package import (several seconds) once per case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata
import numpy as np
import pytest

from samsvae_pyro.cli import main

COMMANDS = {
    "demo": "--steps",
    "simulate": "--kind",
    "download": "--cache-dir",
    "train": "--perturbation-key",
    "evaluate": "--n-particles",
    "predict": "--perturbations",
    "interpret": "--groups",
    "check": "--compare",
}
SIM_KEYS = ["--perturbation-key", "perturbation", "--control-label", "non-targeting", "--split-key", "split"]
TINY_MODEL = ["--n-latent", "3", "--n-hidden", "16", "--batch-size", "128", "--threads", "1", "--quiet"]


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m samsvae_pyro.cli ARGS`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "samsvae_pyro.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``main(ARGS)`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:  # argparse: --help and usage errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_user_error(status: int, stderr: str, *fragments: str) -> None:
    """Exit status 2 and exactly one stderr line, ``error: ...`` naming the fragments; no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """A small count simulation with two pairs, written by ``samsvae simulate``."""
    path = tmp_path_factory.mktemp("cli") / "sim.h5ad"
    result = run_cli("simulate", "--out", path, "--n-perturbations", 4, "--cells-per-perturbation", 40,
                     "--n-double", 2, "--seed", 1)
    assert result.returncode == 0, result.stderr
    assert f"wrote {path}" in result.stdout and "samsvae train --adata" in result.stdout
    return path


@pytest.fixture(scope="module")
def run_dir(simulated, tmp_path_factory) -> Path:
    """A run directory written by ``samsvae train`` (trained briefly, evaluated cheaply)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli("train", "--adata", simulated, *SIM_KEYS, "--out", out, "--steps", 8, *TINY_MODEL,
                     "--eval-particles", 4)
    assert result.returncode == 0, result.stderr
    assert "saved the model in" in result.stdout and "held-out IWELBO" in result.stdout
    return out


# ---------------------------------------------------------------- help


def test_top_level_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(capsys, command):
    status, out, _ = run_main(capsys, command, "--help")
    assert status == 0
    assert out.startswith(f"usage: samsvae {command}") and COMMANDS[command] in out


# ---------------------------------------------------------------- end to end


def test_simulate_writes_a_readable_h5ad(simulated):
    adata = anndata.read_h5ad(simulated)
    assert adata.shape == (7 * 40, 60)  # controls, 4 singles, 2 pairs
    assert {"perturbation", "split"} <= set(adata.obs)
    assert adata.uns["sams_truth"]["mask"].shape == (4, 8)
    counts = adata.X.toarray()
    assert (counts >= 0).all() and np.array_equal(counts, np.round(counts))


def test_simulate_paper_kind(capsys, tmp_path):
    path = tmp_path / "paper.h5ad"
    status, out, err = run_main(capsys, "simulate", "--out", path, "--kind", "paper", "--n-perturbations", 2,
                                "--cells-per-perturbation", 14)
    assert status == 0, err
    adata = anndata.read_h5ad(path)
    assert adata.n_obs == 3 * 14 and "--likelihood normal" in out
    assert not np.array_equal(adata.X, np.round(adata.X))  # continuous values


def test_demo_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--steps", 20, "--out", out, "--small", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"report: {out / 'metrics.md'}" in result.stdout and "held-out IWELBO" in result.stdout
    assert "ATE Pearson" in result.stdout and "mask recovery" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"iwelbo", "ate", "per_condition", "truth", "plots"} <= set(metrics)
    assert metrics["model"]["trained_steps"] == 20 and metrics["ate"]["subsets"]["unseen"]["n_conditions"] == 2
    assert "| SAMSVAE (correlated) |" in (out / "metrics.md").read_text()
    for name in ("ate_scatter", "per_condition_metrics", "mask_heatmap", "training_curves"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "checkpoint.pt").is_file() and (out / "history.csv").is_file()


def test_train_writes_model_and_report(run_dir):
    for name in ("config.json", "checkpoint.pt", "history.csv", "metrics.json", "metrics.md", "ate_model.h5ad"):
        assert (run_dir / name).is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iwelbo"]["n_particles"] == 4 and metrics["model"]["trained_steps"] == 8
    assert "f1" in metrics["truth"]["mask_recovery"]  # the simulation truth travelled in the h5ad


def test_predict_samples_requested_conditions(simulated, run_dir, tmp_path):
    out = tmp_path / "pred.h5ad"
    result = run_cli("predict", run_dir, "--adata", simulated, "--perturbations", "P0", "P1+P3", "--n-cells", 5,
                     "--out", out)
    assert result.returncode == 0, result.stderr
    prediction = anndata.read_h5ad(out)
    assert prediction.n_obs == 10 and prediction.n_vars == 60
    assert list(prediction.obs["perturbation"].value_counts().sort_index().items()) == [("P0", 5), ("P1+P3", 5)]
    assert "counts" in prediction.layers


def test_predict_counterfactual_and_evaluate_again(capsys, simulated, run_dir, tmp_path):
    out = tmp_path / "cf.h5ad"
    status, _, err = run_main(capsys, "predict", run_dir, "--adata", simulated, "--perturbations", "P2",
                              "--mode", "counterfactual", "--out", out)
    assert status == 0, err
    prediction = anndata.read_h5ad(out)
    assert prediction.n_obs == 40 and prediction.obs["source_cell"].nunique() == 40  # the 40 control cells
    report = tmp_path / "report"
    status, out_text, err = run_main(capsys, "evaluate", run_dir, "--adata", simulated, "--out", report,
                                     "--n-particles", 3, "--ate-draws", 3, "--ate-samples-per-draw", 3,
                                     "--no-plots")
    assert status == 0, err
    assert json.loads((report / "metrics.json").read_text())["iwelbo"]["n_particles"] == 3
    assert not list(report.glob("*.png")) and "report:" in out_text


def test_backed_counts_give_the_same_predictions_and_report(capsys, simulated, run_dir, tmp_path):
    """--backed leaves the counts on disk; the numbers are those of the file read into memory."""
    results = {}
    for flag in ([], ["--backed"]):
        out, report = tmp_path / f"cf{len(flag)}.h5ad", tmp_path / f"report{len(flag)}"
        status, _, err = run_main(capsys, "predict", run_dir, "--adata", simulated, *flag, "--perturbations", "P2",
                                  "--mode", "counterfactual", "--out", out)
        assert status == 0, err
        status, _, err = run_main(capsys, "evaluate", run_dir, "--adata", simulated, *flag, "--out", report,
                                  "--n-particles", 3, "--ate-draws", 3, "--ate-samples-per-draw", 3, "--no-plots")
        assert status == 0, err
        results[bool(flag)] = (anndata.read_h5ad(out).layers["counts"],
                               json.loads((report / "metrics.json").read_text())["iwelbo"])
    np.testing.assert_array_equal(np.asarray(results[True][0]), np.asarray(results[False][0]))
    assert results[True][1] == results[False][1]


def test_evaluate_cell_eval_without_the_extra_is_a_user_error(capsys, simulated, run_dir, tmp_path, monkeypatch):
    from samsvae_pyro.runs import evaluation

    monkeypatch.setattr(evaluation, "cell_eval_version", lambda: None)
    status, _, err = run_main(capsys, "evaluate", run_dir, "--adata", simulated, "--out", tmp_path / "r", "--cell-eval")
    assert_user_error(status, err, "samsvae-pyro[eval]")
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_download_uses_a_complete_cached_file(capsys, tmp_path):
    cached = tmp_path / "norman_2019_sc_pert.h5ad"
    with open(cached, "wb") as handle:  # sparse file of the known size: no network needed
        handle.truncate(1_703_064_678)
    status, out, err = run_main(capsys, "download", "norman", "--cache-dir", tmp_path)
    assert status == 0, err
    assert str(cached) in out and "load_norman" in out


# ---------------------------------------------------------------- user errors


def test_unknown_dataset_is_a_one_line_error():
    result = run_cli("download", "mnist")
    assert_user_error(result.returncode, result.stderr, "invalid choice", "mnist")


def test_train_with_a_wrong_perturbation_key(capsys, simulated, tmp_path):
    status, _, err = run_main(capsys, "train", "--adata", simulated, "--perturbation-key", "guide",
                              "--out", tmp_path / "run")
    assert_user_error(status, err, "'guide'", "obs column")
    assert not (tmp_path / "run").exists()


def test_train_with_a_missing_file(tmp_path):
    result = run_cli("train", "--adata", tmp_path / "nope.h5ad", *SIM_KEYS)
    assert_user_error(result.returncode, result.stderr, "nope.h5ad", "does not exist")


def test_train_refuses_to_overwrite_a_run(capsys, simulated, run_dir):
    status, _, err = run_main(capsys, "train", "--adata", simulated, *SIM_KEYS, "--out", run_dir)
    assert_user_error(status, err, "already holds a saved model", "--overwrite")


def test_predict_unknown_perturbation(simulated, run_dir):
    result = run_cli("predict", run_dir, "--adata", simulated, "--perturbations", "P0+XYZ")
    assert_user_error(result.returncode, result.stderr, "'XYZ'", "not in the vocabulary")


def test_evaluate_missing_run_dir(simulated, tmp_path):
    result = run_cli("evaluate", tmp_path / "no_run", "--adata", simulated)
    assert_user_error(result.returncode, result.stderr, "is not a saved run", "samsvae train")


def test_simulate_refuses_a_wrong_suffix(tmp_path):
    result = run_cli("simulate", "--out", tmp_path / "sim.csv")
    assert_user_error(result.returncode, result.stderr, "should end in .h5ad")


def test_demo_rejects_zero_steps():
    result = run_cli("demo", "--steps", "0")
    assert_user_error(result.returncode, result.stderr, "--steps", "positive integer")


# ---------------------------------------------------------------- experiment configs: train --config, sweep, compare

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
SMALL_DEMO = ["--set", "data.simulate.n_perturbations=4", "--set", "data.simulate.cells_per_perturbation=30",
              "--set", "data.simulate.n_double=4", "--set", "data.simulate.n_ate_samples=50",
              "--set", "evaluate.n_particles=2", "--set", "evaluate.ate_draws=2",
              "--set", "evaluate.ate_samples_per_draw=2", "--set", "evaluate.plots=false", "--steps", "2", "--quiet"]


@pytest.mark.parametrize("command, option", [("sweep", "--jobs"), ("compare", "--reference"), ("train", "--config")])
def test_experiment_commands_have_help(capsys, command, option):
    status, out, _ = run_main(capsys, command, "--help")
    assert status == 0 and out.startswith(f"usage: samsvae {command}") and option in out


def test_sweep_then_compare_and_evaluate_a_run(capsys, tmp_path):
    import pandas as pd
    import yaml

    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["sweep"]["grid"] = {"variant": ["sams_vae_correlated", "cpa_vae"], "data.split.seed": [0]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    status, out, err = run_main(capsys, "sweep", path, "--out", tmp_path / "sweep", *SMALL_DEMO)
    assert status == 0, err
    runs = tmp_path / "sweep" / "runs"
    assert "| sams_vae_correlated | SAMSVAE (correlated) | 1 |" in out and "summary:" in out
    status, out, err = run_main(capsys, "compare", runs / "cpa_vae__seed-0", runs / "sams_vae_correlated__seed-0",
                                "--reference", runs / "sams_vae_correlated__seed-0", "--out", tmp_path / "table.md")
    assert status == 0, err
    table = pd.read_csv(tmp_path / "table.csv", index_col=0)
    assert table.loc["sams_vae_correlated__seed-0", "relative IWELBO"] == 0.0
    assert table.loc["cpa_vae__seed-0", "model"] == "CPAVAE (mean_field)" and "ATE r test" in table
    assert (tmp_path / "table.md").read_text().startswith("| run | model | IWELBO | relative IWELBO |")
    status, out, err = run_main(capsys, "evaluate", runs / "cpa_vae__seed-0", "--out", tmp_path / "again",
                                "--n-particles", 2, "--ate-draws", 2, "--ate-samples-per-draw", 2, "--no-plots")
    assert status == 0, err  # no --adata: the data are rebuilt from the run's experiment.yaml
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["model"]["class"] == "CPAVAE"


def test_train_config_writes_a_run_directory(capsys, tmp_path):
    status, out, err = run_main(capsys, "train", "--config", DEMO_CONFIG, "--set", "variant=sams_vae_mean_field",
                                "--out", tmp_path / "run", *SMALL_DEMO)
    assert status == 0, err
    assert "training SAMSVAE (mean_field guide), variant sams_vae_mean_field" in out and "held-out IWELBO" in out
    for name in ("experiment.yaml", "checkpoint.pt", "history.csv", "metrics.json"):
        assert (tmp_path / "run" / name).is_file()
    status, _, err = run_main(capsys, "train", "--config", DEMO_CONFIG, "--n-latent", 3)
    assert_user_error(status, err, "--n-latent does not apply with --config", "--set model.n_latent")


def test_train_with_a_missing_config(capsys, tmp_path):
    status, _, err = run_main(capsys, "train", "--config", tmp_path / "nope.yaml")
    assert_user_error(status, err, "nope.yaml does not exist")


def test_sweep_with_an_unknown_key_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.yaml"
    text = DEMO_CONFIG.read_text()
    assert "\n  n_particles: 5\n" in text  # the train section's line this test misspells
    path.write_text(text.replace("\n  n_particles: 5\n", "\n  n_particels: 5\n"))
    result = run_cli("sweep", path, "--out", tmp_path / "out")
    assert_user_error(result.returncode, result.stderr, "'n_particels'", "section train", "valid keys")
    assert not (tmp_path / "out").exists()  # nothing ran


def test_compare_a_directory_without_metrics_is_a_one_line_error(tmp_path):
    result = run_cli("compare", tmp_path, "--out", tmp_path / "table.md")
    assert_user_error(result.returncode, result.stderr, "has no metrics.json", "samsvae evaluate")


# ---------------------------------------------------------------- issue 17: a newcomer's first hour


def test_every_option_shows_its_default_and_train_defaults_are_the_apis():
    import inspect

    from samsvae_pyro import SAMSVAE
    from samsvae_pyro.cli import build_parser
    from samsvae_pyro.defaults import BATCH_SIZE, LR, MAX_STEPS

    parser = build_parser()
    commands = parser._defaults["commands"]
    for name, sub in commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.option_strings and action.default not in (None, False) and action.nargs != 0 \
                    and action.default is not argparse.SUPPRESS:
                assert "default" in formatter._get_help_string(action), (name, action.option_strings)
    train = commands["train"]
    model = inspect.signature(SAMSVAE).parameters
    fit = inspect.signature(SAMSVAE.train).parameters
    assert train.get_default("n_latent") == model["n_latent"].default
    assert train.get_default("n_hidden") == model["n_hidden"].default
    assert train.get_default("mask_prior_prob") is None is model["mask_prior_prob"].default  # 1 / n_latent
    assert (train.get_default("lr"), train.get_default("batch_size")) == (fit["lr"].default, fit["batch_size"].default)
    assert (LR, BATCH_SIZE, MAX_STEPS) == (fit["lr"].default, fit["batch_size"].default, fit["max_steps"].default)
    assert commands["demo"].get_default("steps") == MAX_STEPS and train.get_default("threads") == 1


@pytest.mark.parametrize("command", ["train", "demo", "simulate", "predict"])
def test_an_unwritable_output_is_refused_before_any_work(simulated, run_dir, tmp_path, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # cannot be created: its parent is a file
    args = {
        "train": ["train", "--adata", simulated, *SIM_KEYS, "--out", out, "--steps", 5, *TINY_MODEL],
        "demo": ["demo", "--out", out, "--small", "--steps", 5, "--quiet"],
        "simulate": ["simulate", "--out", out / "sim.h5ad"],
        "predict": ["predict", run_dir, "--adata", simulated, "--perturbations", "P0", "--out", out / "p.h5ad"],
    }[command]
    result = run_cli(*args)
    assert_user_error(result.returncode, result.stderr, "cannot write", str(out))
    assert "training" not in result.stdout and "simulated" not in result.stdout


def test_predict_refuses_to_overwrite_like_train_and_simulate(simulated, run_dir, tmp_path):
    out = tmp_path / "pred.h5ad"
    args = ["predict", run_dir, "--adata", simulated, "--perturbations", "P0", "--n-cells", 2, "--out", out]
    assert run_cli(*args).returncode == 0
    before = out.read_bytes()
    result = run_cli(*args)
    assert_user_error(result.returncode, result.stderr, "already exists", "--overwrite")
    assert out.read_bytes() == before
    assert run_cli(*args, "--overwrite").returncode == 0


def test_a_counterfactual_source_error_names_the_file_and_what_it_needs(simulated, run_dir, tmp_path):
    source = anndata.read_h5ad(simulated)[:5].copy()
    source.obs = source.obs.drop(columns="perturbation")
    path = tmp_path / "my_cells.h5ad"
    source.write_h5ad(path)
    result = run_cli("predict", run_dir, "--adata", simulated, "--perturbations", "P0", "--mode", "counterfactual",
                     "--source", path, "--out", tmp_path / "cf.h5ad")
    assert_user_error(result.returncode, result.stderr, f"--source {path}", "obs['perturbation']")


def test_a_misspelled_option_points_to_the_subcommand_and_the_closest_option(simulated, tmp_path):
    result = run_cli("train", "--adata", simulated, "--perturbation_key", "perturbation", "--out", tmp_path / "r")
    assert_user_error(result.returncode, result.stderr, "--perturbation_key", "did you mean --perturbation-key?",
                      "samsvae train --help")


def test_resume_of_a_directory_without_a_run(capsys, simulated, tmp_path):
    status, _, err = run_main(capsys, "train", "--resume", tmp_path / "no_run", "--adata", simulated)
    assert_user_error(status, err, "is not a saved run")


def test_resume_continues_a_saved_run_and_prints_its_evaluation(capsys, simulated, run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    status, out, err = run_main(capsys, "train", "--resume", copy, "--adata", simulated, "--eval-particles", 4)
    assert status == 0, err
    assert "saved the model in" in out and "held-out IWELBO" in out
