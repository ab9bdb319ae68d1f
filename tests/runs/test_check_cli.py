"""``samsvae check`` and :func:`samsvae_pyro.runs.check_runs` as a user runs them.

Two tiny runs on one simulation (a NB and a Poisson SAMS-VAE, a few steps each) are written in-process; the
command runs once in a subprocess end to end (two runs side by side, into the first run's directory next to its
evaluation report) and once with a user error; the other cases run through ``main(argv)``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.runs import check_runs, evaluate_run, save_run
from tests.runs.tiny import tiny_fit, tiny_screen
from tests.test_cli import assert_user_error, run_cli, run_main

FAST = ["--n-samples", "3"]


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """(NB run directory, Poisson run directory, .h5ad path); the NB run carries an evaluation report."""
    root = tmp_path_factory.mktemp("check")
    adata, path = tiny_screen(root, n_perturbations=4, n_double=2, n_genes=15)
    for likelihood in ("nb", "poisson"):
        model = tiny_fit(adata, 3, likelihood=likelihood)
        save_run(model, root / likelihood)
        if likelihood == "nb":
            evaluate_run(model, root / likelihood, n_particles=2, ate_draws=2, ate_samples_per_draw=2, plots=False)
    return root / "nb", root / "poisson", path


def test_check_two_runs_side_by_side(saved_runs):
    nb, poisson, sim = saved_runs
    result = run_cli("check", nb, "--adata", sim, "--compare", poisson, *FAST)
    assert result.returncode == 0, result.stderr
    assert "checked nb" in result.stdout and "checked poisson" in result.stdout
    assert "nb (in_sample): flagged gene variance" in result.stdout
    report = json.loads((nb / "ppc.json").read_text())
    assert list(report["runs"]) == ["nb", "poisson"] and report["settings"]["n_samples"] == 3
    assert report["runs"]["poisson"]["generative"]["condition"]["shift"]["n"] > 0
    summary = pd.read_csv(nb / "ppc_summary.csv", header=[0, 1], index_col=[0, 1, 2])
    assert {"nb", "poisson"} == set(summary.columns.get_level_values(0))
    table = pd.read_csv(nb / "ppc_table.csv.gz")
    assert set(table["run"]) == {"nb", "poisson"} and table["p_value"].between(0, 1).all()
    for name in report["files"]["figures"]:
        assert (nb / name).read_bytes().startswith(b"\x89PNG")
    assert len(report["files"]["figures"]) == 6  # 3 kinds x 2 modes
    metrics = (nb / "metrics.md").read_text()
    assert metrics.startswith("# Evaluation of SAMSVAE") and "## Posterior predictive checks" in metrics
    assert "[ppc_summary.md](ppc_summary.md)" in metrics


def test_the_section_stays_when_the_run_is_evaluated_again(capsys, saved_runs):
    nb, _, sim = saved_runs
    status, _, err = run_main(capsys, "check", nb, "--adata", sim, "--modes", "generative", "--no-plots", *FAST)
    assert status == 0, err
    status, _, err = run_main(capsys, "evaluate", nb, "--adata", sim, "--n-particles", "2", "--ate-draws", "2",
                              "--ate-samples-per-draw", "2", "--no-plots")
    assert status == 0, err
    metrics = (nb / "metrics.md").read_text()
    assert metrics.count("## Posterior predictive checks") == 1 and "generative / gene / variance" in metrics


def test_without_a_report_the_check_writes_its_own_files(capsys, saved_runs, tmp_path):
    _, poisson, sim = saved_runs
    status, out, err = run_main(capsys, "check", poisson, "--adata", sim, "--split", "all", "--out", tmp_path,
                                "--no-plots", *FAST)
    assert status == 0, err
    assert not (tmp_path / "metrics.md").exists() and (tmp_path / "ppc_summary.md").is_file()
    assert "replicated data sets of" in out and json.loads((tmp_path / "ppc.json").read_text())["settings"]["split"] is None


def test_a_missing_run_is_a_one_line_error(saved_runs, tmp_path):
    _, _, sim = saved_runs
    result = run_cli("check", tmp_path / "nothing", "--adata", sim)
    assert_user_error(result.returncode, result.stderr, "is not a saved run")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--n-samples", "1"], "at least 2 replicates"),
    (["--modes", "posterior"], "invalid choice"),
    (["--split", "excluded"], "invalid choice"),
])
def test_bad_options_are_one_line_errors(capsys, saved_runs, args, fragment):
    nb, _, sim = saved_runs
    status, _, err = run_main(capsys, "check", nb, "--adata", sim, *args)
    assert_user_error(status, err, fragment)


def test_runs_on_different_cells_are_refused(tmp_path):
    models = {}
    for name in ("a", "b"):
        adata = simulate_counts(n_perturbations=3, n_genes=10, cells_per_perturbation=20, n_ate_samples=10)
        adata.obs_names = [f"{name}_{i}" for i in range(adata.n_obs)]
        SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting",
                              split_key="split")
        models[name] = SAMSVAE(adata, n_latent=2, n_hidden=8, device="cpu")
    with pytest.raises(ValueError, match="hold different test cells"):
        check_runs(models, tmp_path, n_samples=2)
    assert not list(tmp_path.iterdir())  # refused before anything was written
