"""The user-facing surface shared by every model family: setup_anndata, train, save/load, accessors.

Files in ``api/`` never call ``pyro.sample``: they build a model and a guide, hand them to the
trainer, and read posteriors through :mod:`samsvae_pyro.evaluate`.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Callable

import anndata as ad
import numpy as np
import pandas as pd
import torch

from samsvae_pyro.api.device import choose_device, seeded
from samsvae_pyro.data import MinibatchLoader, PerturbationData, build_perturbation_data
from samsvae_pyro.evaluate.ate import ate_anndata, condition_split_flags
from samsvae_pyro.evaluate.iwelbo import iwelbo
from samsvae_pyro.evaluate.posterior import guide_trace, replay_model, site_mean
from samsvae_pyro.evaluate.predictive import (
    TARGET_LIBRARY, local_posterior, model_ate_draws, sample_globals, sample_x, summarise_draws,
)
from samsvae_pyro.evaluate.report import evaluate_model
from samsvae_pyro.guides import check_guide, make_guide
from samsvae_pyro.infer import SVITrainer, check_estimator
from samsvae_pyro.infer.sparse_mask import inference_hooks
from samsvae_pyro.models.plates import E, MASK, Z_BASAL

SETUP_KEY = "_samsvae_setup"
CHECKPOINT, CONFIG = "checkpoint.pt", "config.json"
ENCODER_SIZES = ("n_hidden", "n_layers", "activation")  # registered guides copy these from the decoder


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
        A registered guide sizes its encoder like the decoder (``n_hidden``, ``n_layers``, ``activation``
        of the model, as in the paper) unless these say otherwise.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; chosen once, everything lives there.
    seed
        Seed of the parameter initialisation (training has its own ``seed``).
    """

    def __init__(self, adata: ad.AnnData, *, guide: str | Callable | torch.nn.Module = "correlated",
                 guide_kwargs: dict | None = None, device: str | None = "auto", seed: int = 0, **model_kwargs: Any):
        self.setup = _registered_setup(adata)
        self.device = choose_device(device)
        self.model_kwargs = model_kwargs
        self.data = build_perturbation_data(adata, **self.setup,
                                            count_data=model_kwargs.get("likelihood", "nb") != "normal")
        if isinstance(guide, str):
            guide_kwargs = {k: model_kwargs[k] for k in ENCODER_SIZES if k in model_kwargs} | dict(guide_kwargs or {})
        self.guide_spec, self.guide_kwargs, self.seed = guide, dict(guide_kwargs or {}), seed
        with seeded(seed, torch.device("cpu")):
            self.model = self._build_model(**model_kwargs)
            self.guide = make_guide(
                guide, self.model, x_mean=torch.as_tensor(self.data.x_mean), x_std=torch.as_tensor(self.data.x_std),
                input_transform=self.data.x_transform, **self.guide_kwargs,
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
        encoding: str = "sum", split_seed: int = 0, vocabulary: str = "train",
    ) -> None:
        """Register where the counts, perturbation labels and splits live (validated now).

        Writes one entry, ``adata.uns["_samsvae_setup"]``; the data itself is not modified.
        See :func:`samsvae_pyro.data.build_perturbation_data` for the arguments. ``vocabulary="all"``
        gives every observed condition (``encoding="unique"``) or perturbation (``"sum"``) its own
        column even without training cells, as in the paper's unique-encoding runs: such a column is
        learned from the prior only, so predictions for it show what the prior alone implies.
        """
        setup = dict(perturbation_key=perturbation_key, control_label=control_label, layer=layer,
                     split_key=split_key, delimiter=delimiter, dosage_columns=dosage_columns,
                     control_pattern=control_pattern, encoding=encoding, split_seed=split_seed,
                     vocabulary=vocabulary)
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
        seed: int = 0, progress: bool = True, callback: Callable | None = None, devices: int = 1,
        process_dir: str | Path | None = None, schedules: dict | None = None, lr_globals: float | None = None,
        inference: str | dict | None = None,
    ) -> pd.DataFrame:
        """Fit by SVI for ``max_steps`` more steps; returns the history (step, losses in nats per cell, time).

        A second call, or a call after :meth:`load`, continues from the saved step with the saved
        optimizer state. The best-validation parameters are kept at the end.

        ``devices > 1`` trains with PyTorch Lightning's DDP over that many processes (CPU: gloo, GPU: nccl),
        each on its own shard of the training cells, then loads process 0's parameters (identical in every
        process). Each process writes its final parameters to ``process_dir`` (default: a temporary folder).
        That path has no validation, checkpoint selection, resume, callbacks or schedules.

        ``schedules`` (KL warm-up, mask temperature annealing) and ``lr_globals`` (a separate learning rate
        for q(M) and q(E)) are inference options for experiments: see :mod:`samsvae_pyro.infer.schedules`.
        ``inference="sparse"`` runs the mask-recovery recipe (README "Inference";
        :mod:`samsvae_pyro.infer.sparse_mask`) over these ``max_steps``.
        """
        check_estimator(estimator, self.guide, self.example_batch())
        if devices > 1 and (schedules or lr_globals is not None or inference is not None):
            raise ValueError("schedules, lr_globals and inference apply to single-device training; use devices=1.")
        hooks = inference_hooks(inference, self.model, self.guide, max_steps=max_steps, seed=seed)
        if devices > 1:
            return self._train_lightning(max_steps, devices=devices, batch_size=batch_size, lr=lr,
                                         n_particles=n_particles, estimator=estimator, weighting=weighting,
                                         weight_decay=weight_decay, clip_norm=clip_norm, seed=seed,
                                         progress=progress, process_dir=process_dir)
        counts = {s: torch.as_tensor(self.data.cells_per_perturbation(s), dtype=torch.float32, device=self.device)
                  for s in ("train", "val") if _has_cells(self.data, s)}
        self.trainer = SVITrainer(self.model, self.guide, estimator=estimator, n_particles=n_particles, lr=lr,
                                  weight_decay=weight_decay, clip_norm=clip_norm, weighting=weighting,
                                  cells_per_perturbation=counts, schedules=schedules, lr_globals=lr_globals,
                                  hooks=hooks)
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

    def _train_lightning(self, max_steps: int, *, devices: int, batch_size: int, seed: int, clip_norm,
                         progress: bool, process_dir, weighting: str, **elbo_options) -> pd.DataFrame:
        from samsvae_pyro.infer.lightning import ELBOModule, fit_lightning  # Lightning is slow to import

        counts = torch.as_tensor(self.data.cells_per_perturbation("train"), dtype=torch.float32)
        make_loader = partial(MinibatchLoader, self.data, batch_size=batch_size, shuffle=True, seed=seed)
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(process_dir or scratch)
            module = ELBOModule(self.model, self.guide, make_loader, self.data.indices("train"), weighting=weighting,
                                cells_per_perturbation=counts, save_dir=str(directory), **elbo_options)
            accelerator = "gpu" if self.device.type == "cuda" else "cpu"
            fit_lightning(module, max_steps=max_steps, devices=devices, accelerator=accelerator,
                          clip_norm=clip_norm, seed=seed, progress=progress)
            module.load_state_dict(torch.load(directory / "rank0.pt", map_location="cpu"))
        self.model.to(self.device)
        self.guide.to(self.device)
        self.history = pd.DataFrame({"step": [max_steps], "devices": [devices]})
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
        """Posterior mean latents per cell: ``"basal"`` (z_basal) or ``"perturbed"`` (the model's z).

        The perturbed latent is the model's return value replayed on the guide's draws, e.g. z_basal + d (E * M)
        for SAMS-VAE. Shapes: returns (N, K) for the cells of ``adata`` (default: the training AnnData).
        """
        if kind not in ("basal", "perturbed"):
            raise ValueError(f"kind={kind!r} is not supported; choose 'basal' or 'perturbed'.")
        data = self._data_for(adata)
        out = []
        for batch in self.loader(np.arange(data.n_cells), batch_size=batch_size, data=data):
            trace = guide_trace(self.guide, batch, n_samples)
            if kind == "basal":
                z = trace.nodes[Z_BASAL]["value"]  # (S, B, K)
            else:  # the latent state the model computes from the guide's draws (its return value)
                z = replay_model(self.model, trace, batch, n_samples).nodes["_RETURN"]["value"]
            out.append(z.mean(0).cpu().numpy())
        return np.concatenate(out)

    # ---------------------------------------------------------------- evaluation
    def _cells(self, adata: ad.AnnData | None, split: str | None) -> tuple[PerturbationData, np.ndarray]:
        data = self._data_for(adata)
        return data, (np.arange(data.n_cells) if split is None or adata is not None else data.indices(split))

    def iwelbo(self, adata: ad.AnnData | None = None, *, split: str | None = "test", n_particles: int = 100,
               batch_size: int = 128, kind: str = "predictive", seed: int = 0) -> pd.Series | float:
        """Held-out predictive IWELBO per cell in nats (higher is better), indexed by cell name.

        Evaluates the ``split`` of the training AnnData, or every cell of ``adata`` when given.
        ``kind="joint"`` returns the joint bound per cell instead (a float; see :mod:`samsvae_pyro.evaluate.iwelbo`).
        """
        data, cells = self._cells(adata, split)
        with seeded(seed, self.device):
            values = iwelbo(self.model, self.guide, self.loader(cells, batch_size=batch_size, data=data),
                            n_particles=n_particles, kind=kind)
        if kind == "joint":
            return values
        return pd.Series(values.cpu().numpy(), index=data.obs_names[cells], name="iwelbo")

    def model_ate(self, conditions: list[str] | None = None, *, n_global_draws: int = 50,
                  samples_per_draw: int = 50, method: str = "perturbseq", interval: float = 0.9,
                  max_elements: float = 2e7, seed: int = 0) -> ad.AnnData:
        """Posterior-predictive ATE per condition vs control, with credible intervals from the posterior over (E, M).

        Returns AnnData (conditions x genes): X the posterior mean ATE, layers "lower"/"upper" the
        equal-tailed ``interval`` over ``n_global_draws`` independent global draws, obs the split flags.
        Conditions default to every observed condition; unseen combinations of known perturbations work
        with the "sum" encoding (with "unique", only under ``setup_anndata(..., vocabulary="all")``,
        where their untrained columns give predictions from the prior).
        """
        conditions = list(conditions if conditions is not None else self.data.conditions())
        D = self._dosages(conditions)
        with seeded(seed, self.device):
            draws = model_ate_draws(self.model, self.guide, self.example_batch(1), D, n_global_draws=n_global_draws,
                                    samples_per_draw=samples_per_draw, method=method, max_elements=max_elements)
        summary = summarise_draws(draws, interval=interval)
        return ate_anndata(summary["mean"], conditions, self.data.var_names,
                           layers={"lower": summary["lower"], "upper": summary["upper"]},
                           obs=condition_split_flags(self.data, np.asarray(conditions)))

    def evaluate(self, output_dir: str | Path, **kwargs: Any) -> dict:
        """Write the evaluation report (metrics.json, metrics.md, ATE h5ad files, PNG plots) to ``output_dir``.

        Options (``truth=adata.uns["sams_truth"]`` for simulations, ``n_particles``, ``ate_draws``, ``plots``...)
        and outputs: :func:`samsvae_pyro.evaluate.report.evaluate_model`. Returns the metrics as a nested dict.
        """
        return evaluate_model(self, output_dir, **kwargs)

    def interpret(self, output_dir: str | Path, **kwargs: Any) -> dict:
        """Write the latent-structure analysis (effects, similarity and clusters, grouping score, latent-dim tables,
        plots, interpret.json) to ``output_dir``; options and outputs: :func:`samsvae_pyro.interpret.interpret_model`.
        """
        from samsvae_pyro.interpret import interpret_model  # interpret builds on this module

        return interpret_model(self, output_dir, **kwargs)

    def _dosages(self, conditions: list[str]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.data.condition_dosages(conditions)), dtype=torch.float32,
                               device=self.device)

    @torch.no_grad()
    def predict(self, perturbations: list[str], *, mode: str = "generative", source: ad.AnnData | None = None,
                n_cells: int = 100, library: float = TARGET_LIBRARY, seed: int = 0) -> ad.AnnData:
        """Sample cells under perturbations or combinations, including ones never observed together.

        ``mode="generative"``: ``n_cells`` cells per perturbation with z_basal from the prior, each with its own
        posterior draw of (E, M), at library size ``library``. ``mode="counterfactual"``: z_basal inferred from
        each ``source`` cell (default: the training control cells) with its own dosage, then shifted by each
        requested perturbation, at the source cell's library size.

        Returns AnnData (cells x genes): raw count samples in ``layers["counts"]``, log1p of counts
        normalised to 1e4 in ``X``, ``obs["perturbation"]`` (and ``obs["source_cell"]`` for counterfactuals).
        """
        if mode not in ("generative", "counterfactual"):
            raise ValueError(f"mode={mode!r} is not supported; choose 'generative' or 'counterfactual'.")
        D = self._dosages(list(perturbations))
        with seeded(seed, self.device):
            if mode == "generative":
                counts, obs = self._generative(D, list(perturbations), n_cells, library)
            else:
                counts, obs = self._counterfactual(D, list(perturbations), source)
        return _prediction_anndata(counts, obs, self.data.var_names)

    def _generative(self, D, labels, n_cells, library):
        globals_ = sample_globals(self.guide, self.example_batch(1), n_cells)
        x = sample_x(self.model, globals_, D, torch.full((len(labels),), float(library), device=self.device))
        counts = x.transpose(0, 1).reshape(-1, x.shape[-1])  # (C * n_cells, G), condition-major
        return counts, pd.DataFrame({"perturbation": np.repeat(labels, n_cells)})

    def _counterfactual(self, D, labels, source):
        data = self._data_for(source)
        cells = np.arange(data.n_cells) if source is not None else np.flatnonzero(self.data.control_mask)
        counts, names = [], []
        for batch in self.loader(cells, batch_size=max(1, 4096 // len(labels)), data=data):
            globals_ = sample_globals(self.guide, batch, 1)
            z_basal = local_posterior(self.guide, batch, globals_).nodes[Z_BASAL]["value"]  # (1, B, K)
            B = len(batch["index"])
            x = sample_x(self.model, globals_, D.repeat_interleave(B, 0), batch["library"].repeat(len(labels)),
                         z_basal=z_basal.repeat(1, len(labels), 1))  # (1, C * B, G)
            counts.append(x[0].reshape(len(labels), B, -1))
            names.append(data.obs_names[batch["index"].cpu().numpy()])
        counts = torch.cat(counts, 1).reshape(-1, self.model.n_genes)  # condition-major
        source_names = np.concatenate(names)
        obs = pd.DataFrame({"perturbation": np.repeat(labels, len(source_names)),
                            "source_cell": np.tile(source_names, len(labels))})
        return counts, obs

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


def _prediction_anndata(counts: torch.Tensor, obs: pd.DataFrame, var_names) -> ad.AnnData:
    counts = counts.cpu().numpy().astype(np.float32)
    library = np.maximum(counts.sum(1, keepdims=True), 1.0)
    obs.index = [f"pred_{i}" for i in range(len(obs))]
    return ad.AnnData(X=np.log1p(counts / library * TARGET_LIBRARY), obs=obs,
                      var=pd.DataFrame(index=var_names), layers={"counts": counts})


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
