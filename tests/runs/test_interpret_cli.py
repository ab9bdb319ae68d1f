"""``samsvae interpret`` (and ``samsvae simulate --n-groups``) as a user runs them.

The run directory is written in-process (a tiny model trained for a few steps); the command itself runs
once in a subprocess end to end and once with a user error, the other cases through ``main(argv)``.
"""

from __future__ import annotations

import json

import anndata
import pandas as pd
import pytest

from samsvae_pyro import SAMSVAE
from tests.schema_files import write_replogle_file
from tests.runs.tiny import tiny_fit, tiny_screen
from tests.test_cli import assert_user_error, run_cli, run_main

FAST = ["--n-permutations", "50", "--n-samples", "10", "--n-basal", "16"]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """(run directory, .h5ad path) of a tiny SAMS-VAE on a simulation with 2 groups of 3 perturbations."""
    root = tmp_path_factory.mktemp("interpret")
    adata, path = tiny_screen(root, n_perturbations=6, n_groups=2, n_genes=20)
    tiny_fit(adata, 5).save(root / "run")
    return root / "run", path


def test_help_lists_the_grouping_options(capsys):
    status, out, _ = run_main(capsys, "interpret", "--help")
    assert status == 0 and out.startswith("usage: samsvae interpret")
    for option in ("--groups", "--pathways", "--n-permutations", "--source"):
        assert option in out


def test_interpret_scores_the_simulated_groups(saved_run, tmp_path):
    run_dir, sim = saved_run
    result = run_cli("interpret", run_dir, "--adata", sim, "--out", tmp_path, *FAST)
    assert result.returncode == 0, result.stderr
    assert "true groups" in result.stdout and "grouping AUROC" in result.stdout and "grouping ARI" in result.stdout
    assert "grouping score against 50 label permutations" in result.stdout  # progress lines
    report = json.loads((tmp_path / "interpret.json").read_text())
    assert report["grouping"]["n_groups"] == 2 and report["grouping"]["n_permutations"] == 50
    for name in ("similarity.csv", "clusters.csv", "dim_perturbations.csv", "dim_genes.csv", "grouping_score.csv"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "similarity_heatmap.png").read_bytes().startswith(b"\x89PNG")


def test_interpret_with_a_groups_file_into_the_run_directory(capsys, saved_run, tmp_path):
    run_dir, sim = saved_run
    pd.DataFrame({"perturbation": ["P0", "P1", "P4"], "group": ["a", "a", "b"]}).to_csv(tmp_path / "g.csv", index=False)
    status, out, err = run_main(capsys, "interpret", run_dir, "--adata", sim, "--groups", tmp_path / "g.csv",
                                "--no-plots", *FAST)
    assert status == 0, err
    report = json.loads((run_dir / "interpret.json").read_text())
    assert report["grouping"]["n_grouped"] == 3 and "true groups" not in out
    assert not list(run_dir.glob("*.png"))


def test_pathways_of_a_replogle_file_group_guide_pairs_by_target(capsys, tmp_path):
    adata = write_replogle_file(tmp_path / "replogle.h5ad")  # targets T0-T7, two guide pairs each
    adata.uns["pathways"] = {"COMPLEX_A": ["T0", "T1", "T2"], "COMPLEX_B": ["T3", "T4", "OTHER"], "NONE": ["X"]}
    adata.write_h5ad(tmp_path / "replogle.h5ad")
    SAMSVAE.setup_anndata(adata, perturbation_key="sgID_AB", control_pattern="non-targeting")
    model = SAMSVAE(adata, n_latent=3, n_hidden=16, device="cpu")
    model.train(max_steps=2, batch_size=64, progress=False)
    model.save(tmp_path / "run")
    status, out, err = run_main(capsys, "interpret", tmp_path / "run", "--adata", tmp_path / "replogle.h5ad",
                                "--pathways", "--no-plots", *FAST)
    assert status == 0, err
    assert "pathways: 2 of 3 have perturbed members" in out
    clusters = pd.read_csv(tmp_path / "run" / "clusters.csv", index_col="perturbation")
    assert clusters["group"].value_counts().to_dict() == {"COMPLEX_A": 6, "COMPLEX_B": 4}
    assert all(label.startswith(("T0", "T1", "T2")) for label in clusters.index[clusters["group"] == "COMPLEX_A"])


def test_unknown_perturbation_in_groups_file_is_a_one_line_error(saved_run, tmp_path):
    run_dir, sim = saved_run
    (tmp_path / "g.json").write_text(json.dumps({"a": ["P0", "XYZ"], "b": ["P1", "P2"]}))
    result = run_cli("interpret", run_dir, "--adata", sim, "--groups", tmp_path / "g.json", "--out", tmp_path / "o")
    assert_user_error(result.returncode, result.stderr, "'XYZ'", "does not know")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--pathways"], ["no 'pathways'"]),
    (["--pathways", "--groups", "g.json"], ["either --groups FILE or --pathways"]),
    (["--groups", "missing.json"], ["missing.json", "does not exist"]),
])
def test_other_user_errors(capsys, saved_run, args, fragments):
    run_dir, sim = saved_run
    status, _, err = run_main(capsys, "interpret", run_dir, "--adata", sim, *args)
    assert_user_error(status, err, *fragments)


def test_missing_run_dir(capsys, saved_run, tmp_path):
    status, _, err = run_main(capsys, "interpret", tmp_path / "no_run", "--adata", saved_run[1])
    assert_user_error(status, err, "is not a saved run")
    status, _, err = run_main(capsys, "interpret", tmp_path / "no_run")  # without --adata: an experiment run
    assert_user_error(status, err, "is not an experiment run", "--adata")


def test_simulate_with_groups(capsys, tmp_path):
    status, _, err = run_main(capsys, "simulate", "--out", tmp_path / "g.h5ad", "--n-perturbations", 4,
                              "--cells-per-perturbation", 10, "--n-groups", 2)
    assert status == 0, err
    groups = anndata.read_h5ad(tmp_path / "g.h5ad").uns["sams_truth"]["groups"]
    assert {g: list(ps) for g, ps in groups.items()} == {"G0": ["P0", "P1"], "G1": ["P2", "P3"]}
