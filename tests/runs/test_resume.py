"""A run killed with SIGKILL resumes from its last checkpoint and ends exactly as if never interrupted (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from samsvae_pyro.data import simulate_counts
from samsvae_pyro.runs import resume_run, train_anndata
from samsvae_pyro.runs.layout import HISTORY, write_h5ad

SETUP = dict(perturbation_key="perturbation", control_label="non-targeting", split_key="split")
MODEL = dict(n_latent=2, n_hidden=8, device="cpu")
TRAIN = dict(max_steps=24, batch_size=32, lr=1e-2, n_particles=2, val_every=5, progress=False, checkpoint_every=4)
CHILD = textwrap.dedent(f"""
    import sys, time
    from samsvae_pyro.runs import train_anndata
    from samsvae_pyro.runs.experiment import read_h5ad

    def slowly(trainer):
        time.sleep(0.3)

    train_anndata(read_h5ad(sys.argv[1]), sys.argv[2], setup={SETUP!r}, model={MODEL!r},
                  train=dict({TRAIN!r}, callback=slowly), evaluate=None)
""")
COLUMNS = ["step", "epoch", "train_loss", "val_loss"]


@pytest.mark.slow
def test_a_run_killed_after_its_first_checkpoint_resumes_to_the_same_history(tmp_path):
    adata = simulate_counts(n_perturbations=3, cells_per_perturbation=40, n_genes=10, n_ate_samples=10, seed=2)
    data = write_h5ad(adata, tmp_path / "screen.h5ad")
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(killed)], env=env)
    try:
        deadline = time.monotonic() + 300
        while not (killed / HISTORY).is_file():  # save_run writes it after the model files: a whole checkpoint
            assert child.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    saved = pd.read_csv(killed / HISTORY)
    assert 4 <= len(saved) < TRAIN["max_steps"] and len(saved) % 4 == 0  # killed part-way, at a checkpoint

    resume_run(killed, data, evaluate=None, progress=False)
    whole = tmp_path / "whole"
    train_anndata(adata.copy(), whole, setup=SETUP, model=MODEL, train=TRAIN, evaluate=None)
    resumed, expected = pd.read_csv(killed / HISTORY), pd.read_csv(whole / HISTORY)
    pd.testing.assert_frame_equal(resumed[COLUMNS], expected[COLUMNS], check_exact=True)
