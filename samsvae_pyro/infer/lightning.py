"""Multi-device training with PyTorch Lightning (DDP), over the same Pyro ELBO as :class:`SVITrainer`.

Each process draws minibatches from its own shard of the training cells; every batch keeps the full
cells-plate size N, so each process's loss is an unbiased estimate of the full -ELBO / N and DDP's
gradient average is too. Only differentiable estimators ("trace", "mean_field") can run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from samsvae_pyro._typing import Batch
from samsvae_pyro.infer.estimators import make_elbo
from samsvae_pyro.infer.weighting import weighting_context


class ShardedBatches:
    """The training batches of one DDP process: rank r sees cells r, r + W, r + 2W, ... of each epoch."""

    def __init__(self, make_loader, indices: np.ndarray, *, rank: int, world_size: int):
        self.loader = make_loader(indices[rank::world_size])
        self.n_cells, self.epoch = len(indices), 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        self.loader.set_epoch(self.epoch)
        self.epoch += 1
        for batch in self.loader:
            yield {**batch, "n_cells": self.n_cells}


class ELBOModule(L.LightningModule):
    """A LightningModule whose loss is the Pyro -ELBO per cell of (model, guide)."""

    def __init__(self, model: nn.Module, guide: nn.Module, make_loader, train_indices: np.ndarray, *,
                 estimator: str = "trace", n_particles: int = 5, lr: float = 3e-4, weight_decay: float = 1e-6,
                 weighting: str = "plated", cells_per_perturbation: Tensor | None = None,
                 save_dir: str | None = None):
        super().__init__()
        if estimator == "tracegraph":
            raise ValueError("estimator='tracegraph' has no differentiable loss; multi-device training supports "
                             "'trace' and 'mean_field'.")
        self.pyro_model, self.guide = model, guide
        self.elbo = make_elbo(estimator, n_particles=n_particles)
        self.make_loader, self.train_indices = make_loader, train_indices
        self.lr, self.weight_decay, self.weighting = lr, weight_decay, weighting
        self.counts, self.save_dir = cells_per_perturbation, save_dir

    def train_dataloader(self) -> ShardedBatches:
        return ShardedBatches(self.make_loader, self.train_indices, rank=self.global_rank,
                              world_size=self.trainer.world_size)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        counts = None if self.counts is None else self.counts.to(batch["D"].device)
        with weighting_context(self.weighting, batch, counts):
            loss = self.elbo.differentiable_loss(self.pyro_model, self.guide, batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["index"]))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def on_train_end(self) -> None:
        """Write this process's parameters to ``save_dir/rank{r}.pt`` (the main process reloads rank 0)."""
        if self.save_dir is not None:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
            torch.save(self.state_dict(), Path(self.save_dir) / f"rank{self.global_rank}.pt")


def fit_lightning(module: ELBOModule, *, max_steps: int, devices: int, accelerator: str = "auto",
                  clip_norm: float | None = 100.0, seed: int = 0, progress: bool = True) -> None:
    """Train ``module`` with Lightning's DDP over ``devices`` processes (gloo on CPU, nccl on GPU)."""
    L.seed_everything(seed, workers=True, verbose=False)
    trainer = L.Trainer(
        max_steps=max_steps, devices=devices, accelerator=accelerator,
        strategy="ddp_spawn" if devices > 1 else "auto", gradient_clip_val=clip_norm,
        enable_progress_bar=progress, enable_checkpointing=False, logger=False, enable_model_summary=False,
    )
    trainer.fit(module)
