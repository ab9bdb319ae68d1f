"""A tiny registered count simulation on disk and a tiny SAMS-VAE fitted to it, for the command-line tests."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from samsvae_pyro import SAMSVAE, simulate_counts


def tiny_screen(root: Path, **simulate) -> tuple[AnnData, Path]:
    """A count simulation (30 cells per condition) written to ``root/sim.h5ad``, then registered."""
    adata = simulate_counts(cells_per_perturbation=30, n_ate_samples=10, **simulate)
    adata.write_h5ad(root / "sim.h5ad")
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return adata, root / "sim.h5ad"


def tiny_fit(adata: AnnData, steps: int, **model_kwargs) -> SAMSVAE:
    """SAMS-VAE with 3 latents and 16 hidden units on the CPU, trained ``steps`` steps of 64 cells."""
    model = SAMSVAE(adata, n_latent=3, n_hidden=16, device="cpu", **model_kwargs)
    model.train(max_steps=steps, batch_size=64, progress=False)
    return model
