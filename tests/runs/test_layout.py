"""A run directory: save_run / load_run through the family registry, and damaged files at the command line."""

from __future__ import annotations

import pandas as pd
import pytest

from samsvae_pyro.api import FAMILIES
from samsvae_pyro.api.persistence import CHECKPOINT, MODEL_CONFIG
from samsvae_pyro.runs import load_run, save_run
from samsvae_pyro.cli import main
from samsvae_pyro.runs.layout import HISTORY, METRICS, MODEL_FILES
from tests.api.test_persistence import DAMAGES, assert_same_parameters, copy_of
from tests.test_cli import assert_user_error, run_cli, run_main

SMALL = dict(n_latent=2, n_hidden=8, device="cpu")
ENCODING = {"SVAEPlus": "unique"}  # SVAE+: one perturbation per cell


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_load_run_resolves_every_family_from_its_config(tiny_adata, tmp_path, name):
    family = FAMILIES[name]
    adata = tiny_adata.copy()
    family.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split",
                         encoding=ENCODING.get(name, "sum"))
    model = family(adata, **SMALL)
    model.train(max_steps=2, batch_size=64, val_every=1, progress=False)
    save_run(model, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(MODEL_FILES + (HISTORY,))
    loaded = load_run(tmp_path / "run", adata, device="cpu")
    assert type(loaded) is family
    pd.testing.assert_frame_equal(loaded.history, model.history, check_dtype=False)  # through history.csv
    assert_same_parameters(loaded, model)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny_adata):
    """A saved run of `samsvae train` and the .h5ad it was trained on."""
    root = tmp_path_factory.mktemp("cli_run")
    tiny_adata.write_h5ad(root / "sim.h5ad")
    args = ["train", "--adata", root / "sim.h5ad", "--perturbation-key", "perturbation", "--control-label",
            "non-targeting", "--split-key", "split", "--n-latent", "2", "--n-hidden", "8", "--steps", "2",
            "--no-evaluate", "--quiet", "--device", "cpu", "--out", root / "run"]
    assert main([str(arg) for arg in args]) == 0
    return root / "run", root / "sim.h5ad"


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize("name", [CHECKPOINT, MODEL_CONFIG])
def test_a_damaged_run_file_is_one_error_line_at_the_command_line(saved_run, tmp_path, capsys, name, damage):
    directory, sim = saved_run
    run = copy_of(directory, tmp_path)
    DAMAGES[damage](run / name)
    status, _, err = run_main(capsys, "evaluate", run, "--adata", sim, "--no-plots", "--n-particles", "2")
    assert_user_error(status, err, str(run / name))


def test_a_truncated_checkpoint_in_a_fresh_process(saved_run, tmp_path):
    directory, sim = saved_run
    run = copy_of(directory, tmp_path)
    DAMAGES["truncated"](run / CHECKPOINT)
    result = run_cli("predict", run, "--adata", sim, "--perturbations", "P00", "--n-cells", "2")
    assert_user_error(result.returncode, result.stderr, str(run / CHECKPOINT), "damaged", "re-run the training")


def test_a_damaged_metrics_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / METRICS).write_text('{"iwelbo": {"mean": ')  # truncated
    status, _, err = run_main(capsys, "compare", tmp_path / "run", "--out", tmp_path / "table.md")
    assert_user_error(status, err, str(tmp_path / "run" / METRICS), "damaged")


def test_a_run_with_a_custom_guide_says_which_factory_to_pass(saved_run, tmp_path, capsys, tiny_adata):
    from samsvae_pyro import SAMSVAE
    from tests.api.test_persistence import small_mean_field

    _, sim = saved_run
    adata = tiny_adata.copy()
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    save_run(SAMSVAE(adata, guide=small_mean_field, **SMALL), tmp_path / "custom")
    status, _, err = run_main(capsys, "evaluate", tmp_path / "custom", "--adata", sim)
    assert_user_error(status, err, "custom guide (small_mean_field)", "guide=small_mean_field")
