"""The user-facing surface shared by every model family: setup_anndata, train, save/load, accessors.

Files in ``api/`` never call ``pyro.sample``: they build a model and a guide, hand them to the
trainer, and read posteriors through :mod:`samsvae_pyro.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import anndata as ad
import numpy as np
import pandas as pd
import torch

from samsvae_pyro.api.device import choose_device
from samsvae_pyro.data import MinibatchLoader, PerturbationData, build_perturbation_data
from samsvae_pyro.evaluate.posterior import guide_trace, site_mean
from samsvae_pyro.guides import check_guide, make_guide
from samsvae_pyro.infer import SVITrainer, check_estimator
from samsvae_pyro.models.plates import E, MASK, Z_BASAL, latent_offset

SETUP_KEY = "_samsvae_setup"
CHECKPOINT, CONFIG = "checkpoint.pt", "config.json"


class PerturbationModel:
    """Base class: subclasses set ``model_class`` and implement ``_build_model``.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    guide
        Registered guide name, guide module, or factory (see :mod:`samsvae_pyro.guides`).
    guide_kwargs
        Options of a registered guide (e.g. ``use_offset``, ``mask_temperature``, ``embedding_hidden``).
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; chosen once, everything lives there.
    """

    def __init__(self, adata: ad.AnnData, *, guide: str | Callable | torch.nn.Module = "correlated",
                 guide_kwargs: dict | None = None, device: str | None = "auto", **model_kwargs: Any):
        self.setup = _registered_setup(adata)
        self.device = choose_device(device)
        self.model_kwargs = model_kwargs
        self.data = build_perturbation_data(adata, **self.setup,
                                            count_data=model_kwargs.get("likelihood", "nb") != "normal")
        self.model = self._build_model(**model_kwargs)
        self.guide_spec, self.guide_kwargs = guide, dict(guide_kwargs or {})
        self.guide = make_guide(
            guide, self.model, x_mean=torch.as_tensor(self.data.x_mean), x_std=torch.as_tensor(self.data.x_std),
            input_transform="log1p" if self.model.head.is_count else "identity", **self.guide_kwargs,
        ).to(self.device)
        self.model.to(self.device)
        check_guide(self.model, self.guide, self.example_batch())
        self.trainer: SVITrainer | None = None
        self._trainer_state: dict | None = None
        self.history: pd.DataFrame | None = None

    # ---------------------------------------------------------------- setup
    @classmethod
    def setup_anndata(
        cls, adata: ad.AnnData, *, perturbation_key: str | None = None, control_label: str = "control",
        layer: str | None = None, split_key: str | None = None, delimiter: str = "+",
        dosage_columns: str | list[str] | None = None, control_pattern: str | None = None,
        encoding: str = "sum", split_seed: int = 0,
    ) -> None:
        """Register where the counts, perturbation labels and splits live (validated now).

        Writes one entry, ``adata.uns["_samsvae_setup"]``; the data itself is not modified.
        See :func:`samsvae_pyro.data.build_perturbation_data` for the arguments.
        """
        setup = dict(perturbation_key=perturbation_key, control_label=control_label, layer=layer,
                     split_key=split_key, delimiter=delimiter, dosage_columns=dosage_columns,
                     control_pattern=control_pattern, encoding=encoding, split_seed=split_seed)
        build_perturbation_data(adata, **setup, count_data=False)
        adata.uns[SETUP_KEY] = {k: v for k, v in setup.items() if v is not None}

    def _build_model(self, **model_kwargs):
        raise NotImplementedError

    # ---------------------------------------------------------------- data
    def loader(self, split: str | np.ndarray, *, batch_size: int = 512, shuffle: bool = False, seed: int = 0,
               data: PerturbationData | None = None) -> MinibatchLoader:
        """Minibatches of a split (name or cell positions) of the training data (or of ``data``)."""
        data = data or self.data
        indices = data.indices(split) if isinstance(split, str) else np.asarray(split)
        return MinibatchLoader(data, indices, batch_size=batch_size, shuffle=shuffle, seed=seed, device=self.device)

    def example_batch(self, n: int = 2):
        """A small batch of training cells, for tracing."""
        return next(iter(self.loader(self.data.indices("train")[:n], batch_size=n)))

    def _data_for(self, adata: ad.AnnData | None) -> PerturbationData:
        if adata is None:
            return self.data
        return build_perturbation_data(adata, **self.setup, count_data=self.model.head.is_count,
                                       reference=self.data)

    # ---------------------------------------------------------------- training
    def train(
        self, max_steps: int = 1000, *, batch_size: int = 512, lr: float = 3e-4, n_particles: int = 5,
        estimator: str = "trace", weighting: str = "plated", weight_decay: float = 1e-6,
        clip_norm: float | None = 100.0, val_every: int = 500, early_stopping_patience: int | None = None,
        seed: int = 0, progress: bool = True, callback: Callable | None = None,
    ) -> pd.DataFrame:
        """Fit by SVI for ``max_steps`` more steps; returns the history (step, losses in nats per cell, time).

        A second call, or a call after :meth:`load`, continues from the saved step with the saved
        optimizer state. The best-validation parameters are kept at the end.
        """
        check_estimator(estimator, self.guide, self.example_batch())
        counts = {s: torch.as_tensor(self.data.cells_per_perturbation(s), dtype=torch.float32, device=self.device)
                  for s in ("train", "val") if _has_cells(self.data, s)}
        self.trainer = SVITrainer(self.model, self.guide, estimator=estimator, n_particles=n_particles, lr=lr,
                                  weight_decay=weight_decay, clip_norm=clip_norm, weighting=weighting,
                                  cells_per_perturbation=counts)
        if self._trainer_state is not None:
            self.trainer.load_state_dict(self._trainer_state)
        train = self.loader("train", batch_size=batch_size, shuffle=True, seed=seed)
        val = self.loader("val", batch_size=batch_size) if "val" in counts else None
        self.history = self.trainer.fit(
            train, val, max_steps=self.trainer.step + max_steps, val_every=val_every,
            early_stopping_patience=early_stopping_patience, seed=seed, progress=progress, callback=callback,
        )
        self._trainer_state = self.trainer.state_dict()
        return self.history

    # ---------------------------------------------------------------- posterior accessors
    def _global_trace(self, n_samples: int):
        return guide_trace(self.guide, self.example_batch(1), n_samples)

    def mask_probabilities(self, n_samples: int = 100) -> pd.DataFrame:
        """Posterior inclusion probabilities q(m_tk = 1), (T, K), indexed by perturbation name."""
        return self._frame(site_mean(self._global_trace(n_samples), MASK))

    def perturbation_embeddings(self, n_samples: int = 100) -> pd.DataFrame:
        """Posterior mean embeddings E[e_tk], (T, K), indexed by perturbation name."""
        return self._frame(site_mean(self._global_trace(n_samples), E))

    def _frame(self, values: torch.Tensor) -> pd.DataFrame:
        columns = [f"latent_{k}" for k in range(values.shape[-1])]
        return pd.DataFrame(values.cpu().numpy(), index=list(self.data.vocabulary.perturbations), columns=columns)

    @torch.no_grad()
    def get_latent_representation(self, adata: ad.AnnData | None = None, *, kind: str = "basal",
                                  n_samples: int = 10, batch_size: int = 512) -> np.ndarray:
        """Posterior mean latents per cell: ``"basal"`` (z_basal) or ``"perturbed"`` (z_basal + d (E * M)).

        Shapes: returns (N, K) for the cells of ``adata`` (default: the training AnnData).
        """
        if kind not in ("basal", "perturbed"):
            raise ValueError(f"kind={kind!r} is not supported; choose 'basal' or 'perturbed'.")
        data = self._data_for(adata)
        out = []
        for batch in self.loader(np.arange(data.n_cells), batch_size=batch_size, data=data):
            trace = guide_trace(self.guide, batch, n_samples)
            z = trace.nodes[Z_BASAL]["value"]  # (S, B, K)
            if kind == "perturbed":
                mask = trace.nodes[MASK]["value"] if MASK in trace.nodes else None
                z = z + latent_offset(batch["D"], trace.nodes[E]["value"], mask)
            out.append(z.mean(0).cpu().numpy())
        return np.concatenate(out)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write parameters, trainer state (to resume) and the configuration to ``directory``."""
        directory = Path(directory)
        if (directory / CHECKPOINT).exists() and not overwrite:
            raise ValueError(f"{directory} already holds a saved model; pass overwrite=True to replace it.")
        if not isinstance(self.guide_spec, str):
            raise ValueError("Only models with a registered guide name can be saved and re-created by load(); "
                             "save a custom guide's state_dict yourself.")
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.model.state_dict(), "guide": self.guide.state_dict(),
                    "trainer": self._trainer_state}, directory / CHECKPOINT)
        config = {"class": type(self).__name__, "model_kwargs": self.model_kwargs, "guide": self.guide_spec,
                  "guide_kwargs": self.guide_kwargs, "setup": self.setup,
                  "vocabulary": self.data.vocabulary.to_dict(), "var_names": list(map(str, self.data.var_names))}
        (directory / CONFIG).write_text(json.dumps(config, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, adata: ad.AnnData, *, device: str | None = "auto"):
        """Re-create a saved model on ``adata`` (same genes and perturbation vocabulary)."""
        directory = Path(directory)
        config = json.loads((directory / CONFIG).read_text())
        adata = adata if SETUP_KEY in adata.uns else _with_setup(adata, config["setup"])
        obj = cls(adata, guide=config["guide"], guide_kwargs=config["guide_kwargs"], device=device,
                  **config["model_kwargs"])
        _check_same_design(obj.data, config)
        state = torch.load(directory / CHECKPOINT, map_location=obj.device, weights_only=False)
        obj.model.load_state_dict(state["model"])
        obj.guide.load_state_dict(state["guide"])
        obj._trainer_state = state["trainer"]
        return obj


def _registered_setup(adata: ad.AnnData) -> dict:
    if SETUP_KEY not in adata.uns:
        raise ValueError("This AnnData is not registered: call SAMSVAE.setup_anndata(adata, perturbation_key=..., "
                         "control_label=...) before creating the model.")
    return dict(adata.uns[SETUP_KEY])


def _with_setup(adata: ad.AnnData, setup: dict) -> ad.AnnData:
    adata = adata.copy()
    adata.uns[SETUP_KEY] = setup
    return adata


def _has_cells(data: PerturbationData, split: str) -> bool:
    return bool((data.split == split).any())


def _check_same_design(data: PerturbationData, config: dict) -> None:
    if list(map(str, data.var_names)) != config["var_names"]:
        raise ValueError("The genes of this AnnData differ from the saved model's; subset and order them as "
                         "in the training data (config.json lists them).")
    if data.vocabulary.to_dict() != config["vocabulary"]:
        raise ValueError("The perturbation vocabulary built from this AnnData differs from the saved model's; "
                         "load with the training AnnData (same labels and split).")
