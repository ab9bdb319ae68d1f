"""The user-facing surface shared by every model family: setup_anndata, train, save/load, accessors.

Files in ``api/`` never call ``pyro.sample``: they build a model and a guide, hand them to the
trainer, and read posteriors through :mod:`samsvae_pyro.evaluate`. Nothing here imports
:mod:`samsvae_pyro.runs`: the report of a run on disk is ``samsvae_pyro.runs.evaluate_run(model, dir)``
and its latent-structure analysis ``samsvae_pyro.runs.interpret_run(model, dir)``.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from functools import partial, wraps
from pathlib import Path
from typing import Any, Callable, get_args

import anndata as ad
import numpy as np
import pandas as pd
import torch

from samsvae_pyro._typing import (
    AteMethod, CheckMode, EstimatorName, GuideFactory, GuideName, IwelboKind, LatentKind, PredictMode, Sampling,
    Weighting,
)
from samsvae_pyro.api.persistence import (
    CHECKPOINT,
    guide_for_load,
    load_state,
    read_checkpoint,
    read_model_config,
    save_model,
)
from samsvae_pyro.data import MinibatchLoader, PerturbationData, bootstrap_cells, build_perturbation_data
from samsvae_pyro.data.batches import block_options
from samsvae_pyro.data.registry import design_arguments, register, registered_design, registered_setup, with_setup
from samsvae_pyro.data.transforms import TARGET_LIBRARY, ate_method
from samsvae_pyro.defaults import BATCH_SIZE, LR, MAX_STEPS
from samsvae_pyro.device import DEFAULT_THREADS, check_threads, choose_device, seeded, torch_threads
from samsvae_pyro.evaluate.ate import ate_anndata, condition_split_flags
from samsvae_pyro.evaluate.calibration import ate_calibration
from samsvae_pyro.evaluate.criticism import (
    MODES, PosteriorPredictiveCheck, posterior_predictive_check, to_inference_data,
)
from samsvae_pyro.evaluate.effects import posterior_effects
from samsvae_pyro.evaluate.iwelbo import iwelbo
from samsvae_pyro.evaluate.latent_dims import decoder_response
from samsvae_pyro.evaluate.posterior import guide_trace, latent_frame, replay_model, site_mean
from samsvae_pyro.evaluate.predictive import (
    counterfactual_counts,
    generative_counts,
    model_ate_draws,
    prediction_anndata,
    summarise_draws,
)
from samsvae_pyro.guides import check_guide, make_guide
from samsvae_pyro.infer import SVITrainer, check_estimator, check_training_arguments
from samsvae_pyro.infer.trainer import HISTORY_COLUMNS
from samsvae_pyro.infer.sparse_mask import inference_hooks
from samsvae_pyro.models.plates import E, MASK, Z_BASAL
from samsvae_pyro.nn.likelihoods import is_count

ENCODER_SIZES = ("n_hidden", "n_layers", "activation")  # registered guides copy these from the decoder
LATENT_KINDS, PREDICT_MODES = get_args(LatentKind), get_args(PredictMode)


def _threaded(method: Callable) -> Callable:
    """Run a public method with the model's torch thread count (restored afterwards)."""
    @wraps(method)
    def run(self, *args, **kwargs):
        with torch_threads(self.threads):
            return method(self, *args, **kwargs)
    return run


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
    threads
        Torch intra-op CPU threads for this model's work (training, evaluation, prediction), set for the
        duration of each call: default 1, which is never far from the fastest at this package's sizes and
        does not collapse on a busy machine as torch's one-thread-per-core default does (README, "Speed and
        threads"). ``None`` keeps torch's current setting.
    """

    def __init__(self, adata: ad.AnnData, *, guide: GuideName | GuideFactory = "correlated",
                 guide_kwargs: dict | None = None, device: str | None = "auto", seed: int = 0,
                 threads: int | None = DEFAULT_THREADS, **model_kwargs: Any):
        self.setup = registered_setup(adata)
        self.device = choose_device(device)
        self.threads = check_threads(threads)
        self.model_kwargs = model_kwargs
        likelihood = model_kwargs.get("likelihood", "nb")
        if is_count(likelihood) and not self.setup.get("count_data", True):
            raise ValueError(f"This AnnData was registered with count_data=False (continuous values), but "
                             f"likelihood={likelihood!r} models counts: use likelihood='normal', or register raw "
                             "counts with setup_anndata(..., count_data=True).")
        self.data = registered_design(adata, count_data=is_count(likelihood))
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
        self.trainer_state: dict | None = None  # optimizer and step of the last training, to resume (saved)
        self.history: pd.DataFrame | None = None

    # ---------------------------------------------------------------- setup
    @classmethod
    def setup_anndata(
        cls, adata: ad.AnnData, *, perturbation_key: str | None = None, control_label: str = "control",
        layer: str | None = None, split_key: str | None = None, delimiter: str = "+",
        dosage_columns: str | list[str] | None = None, control_pattern: str | None = None,
        encoding: str = "sum", split_seed: int = 0, vocabulary: str = "train", count_data: bool = True,
    ) -> None:
        """Register where the counts, perturbation labels and splits live (validated now).

        Writes one entry, ``adata.uns["_samsvae_setup"]``; the data itself is not modified.
        See :func:`samsvae_pyro.data.build_perturbation_data` for the arguments. Everything is checked
        here, before any model exists: labels, splits, and the values. With ``count_data=True`` (default)
        they must be raw counts, as the "nb" and "poisson" likelihoods need (non-negative integers, at most
        2^24, float16 only below 2,048); ``count_data=False`` registers continuous values (only finite
        values are required), to be modelled with ``likelihood="normal"``. ``vocabulary="all"``
        gives every observed condition (``encoding="unique"``) or perturbation (``"sum"``) its own
        column even without training cells, as in the paper's unique-encoding runs: such a column is
        learned from the prior only, so predictions for it show what the prior alone implies.
        """
        register(adata, perturbation_key=perturbation_key, control_label=control_label, layer=layer,
                 split_key=split_key, delimiter=delimiter, dosage_columns=dosage_columns,
                 control_pattern=control_pattern, encoding=encoding, split_seed=split_seed, vocabulary=vocabulary,
                 count_data=count_data)

    @classmethod
    def bagged(cls, adata: ad.AnnData, n_fits: int = 5, *, seed: int = 0, train: dict | None = None,
               bootstrap: bool = True, **model_kwargs: Any) -> list[PerturbationModel]:
        """Fit a bag of ``n_fits`` models of ``adata`` whose pooled posterior carries the networks' sampling error.

        Fit k is built and trained with seed ``seed + 1000 k`` (bags of neighbouring seeds share no fit); fit 0
        trains on all training cells, fit k >= 1 on the bootstrap resample ``train(bootstrap=seed + 1000 k)``.
        ``train`` holds the :meth:`train` arguments shared by every fit, ``model_kwargs`` the constructor's.
        ``bootstrap=False`` trains every fit on all training cells: a seed ensemble (for comparison).
        Pass the others as ``ensemble=`` of the first: ``fits[0].model_ate(..., ensemble=fits[1:])``,
        ``fits[0].ate_calibration(..., ensemble=fits[1:])`` (README "Calibrated treatment effects"). The
        calibrated recipe: ``SAMSVAE.bagged(adata, 10, train={"inference": {"target": density}})``; with few
        cells per condition take point estimates from ``fits[0]`` alone and the intervals from the bag.
        """
        if not isinstance(n_fits, int) or isinstance(n_fits, bool) or n_fits < 1:
            raise ValueError(f"n_fits={n_fits!r} must be an integer >= 1 (the number of fits in the bag).")
        train = dict(train or {})
        clash = {"seed", "bootstrap"} & set(train)
        if clash:
            raise ValueError(f"train={sorted(clash)} is set per fit by bagged(); pass seed=... to bagged instead.")
        fits = []
        for k in range(n_fits):
            fit_seed = seed + 1000 * k
            model = cls(adata, seed=fit_seed, **model_kwargs)
            model.train(seed=fit_seed, bootstrap=fit_seed if bootstrap and k else None, **train)
            fits.append(model)
        return fits

    def _build_model(self, **model_kwargs):
        raise NotImplementedError

    # ---------------------------------------------------------------- data
    def loader(self, split: str | np.ndarray, *, batch_size: int = 512, shuffle: bool = False, seed: int = 0,
               data: PerturbationData | None = None, sampling: Sampling = "auto", **shards: Any) -> MinibatchLoader:
        """Minibatches of a split (name or cell positions) of the training data (or of ``data``);
        ``sampling``: "cells", "blocks", or "auto" (blocks for counts on disk; :mod:`samsvae_pyro.data.batches`);
        ``shards``: ``rank``, ``world_size``, ``even_shards`` of :class:`~samsvae_pyro.data.MinibatchLoader`."""
        data = data or self.data
        indices = data.indices(split) if isinstance(split, str) else np.asarray(split)
        return MinibatchLoader(data, indices, batch_size=batch_size, shuffle=shuffle, seed=seed, device=self.device,
                               **block_options(data, sampling), **shards)

    def example_batch(self, n: int = 2):
        """A small batch of training cells, for tracing."""
        return next(iter(self.loader(self.data.indices("train")[:n], batch_size=n)))

    def _data_for(self, adata: ad.AnnData | None) -> PerturbationData:
        if adata is None:
            return self.data
        return build_perturbation_data(adata, **design_arguments(self.setup), count_data=self.model.head.is_count,
                                       reference=self.data)

    # ---------------------------------------------------------------- training
    @_threaded
    def train(
        self, max_steps: int = MAX_STEPS, *, batch_size: int = BATCH_SIZE, lr: float = LR, n_particles: int = 5,
        estimator: EstimatorName = "trace", weighting: Weighting = "plated", weight_decay: float = 1e-6,
        clip_norm: float | None = 100.0, val_every: int = 500, early_stopping_patience: int | None = None,
        seed: int = 0, progress: bool = True, callback: Callable | None = None, devices: int = 1,
        accelerator: str = "auto", strategy: str = "auto", num_nodes: int = 1,
        schedules: dict | None = None, lr_globals: float | None = None, inference: str | dict | None = None,
        checkpoint_every: int | None = None, checkpoint: Callable | None = None, sampling: Sampling = "auto",
        bootstrap: int | None = None,
    ) -> pd.DataFrame:
        """Fit by SVI for ``max_steps`` more steps; returns the history (step, losses in nats per cell, time).

        The defaults (1000 steps of 512 cells, Adam at lr 3e-3) suit a first run on a small screen
        (:mod:`samsvae_pyro.defaults`); the paper's longer schedules are in ``configs/``. Every argument is
        checked before the first step.

        A second call, or a call after :meth:`load`, continues from the saved step with the saved
        optimizer state (bit-exactly on CPU); :meth:`resume` continues to the step count of the call that
        was interrupted, with its arguments. The best-validation parameters are kept at the end.

        ``devices > 1`` or ``num_nodes > 1``: the same loop in that many data-parallel processes per node
        through Lightning Fabric (``accelerator`` "cpu" | "gpu" | "auto"; ``strategy`` "auto" | "ddp" |
        "ddp_spawn" | "ddp_fork"; gloo on CPU, nccl on GPU), each process on its own shard of every epoch,
        with the full-size cells plate and averaged gradients (:mod:`samsvae_pyro.infer.distributed`);
        validation, checkpoints, schedules, ``lr_globals``, resume and the history work as with one
        process. Under ``ddp_spawn`` (the default from Python) the model and ``callback`` are pickled into
        the new processes, so a callback must be a module-level function; it runs in every process.

        ``checkpoint(model)`` is called every ``checkpoint_every`` steps (in process 0) with this model's
        ``trainer_state`` and ``history`` brought up to date, e.g. ``samsvae_pyro.runs.save_run`` into the
        run directory (which is what ``samsvae train`` does), so that a killed run can be resumed.

        ``schedules`` (KL warm-up, mask temperature annealing) and ``lr_globals`` (a separate learning rate
        for q(M) and q(E)) are inference options for experiments: see :mod:`samsvae_pyro.infer.schedules`.
        ``inference="sparse"`` runs the mask-recovery recipe (README "Inference";
        :mod:`samsvae_pyro.infer.sparse_mask`) over these ``max_steps`` (one process only).

        ``sampling`` draws the training batches: ``"cells"`` permutes the cells every epoch, ``"blocks"`` permutes
        blocks of consecutive cells and shuffles cells within buffers of blocks read at once (64 x 64 cells, 512 x 32
        from a .zarr; README "Data larger than memory"; :mod:`samsvae_pyro.data.batches`); ``"auto"`` (default)
        chooses blocks for counts on disk and cells otherwise.

        ``bootstrap=k`` trains on a bootstrap resample of the training cells, drawn with seed k within each
        condition (:func:`~samsvae_pyro.data.bootstrap_cells`; validation cells unchanged). Fits with different
        ``k`` form a bagged ensemble whose pooled posterior (``model_ate(..., ensemble=[...])``) carries the
        sampling error of the fitted networks (README "Calibrated treatment effects").
        """
        check_training_arguments(max_steps=max_steps, batch_size=batch_size, lr=lr, n_particles=n_particles,
                                 weight_decay=weight_decay, clip_norm=clip_norm, val_every=val_every, seed=seed,
                                 early_stopping_patience=early_stopping_patience, devices=devices,
                                 lr_globals=lr_globals, num_nodes=num_nodes, checkpoint_every=checkpoint_every,
                                 bootstrap=bootstrap)
        check_estimator(estimator, self.guide, self.example_batch())
        block_options(self.data, sampling)  # checks the name
        parallel = devices > 1 or num_nodes > 1
        if parallel and inference is not None:
            raise ValueError("inference=... (the sparse-mask hooks) runs in one process only; use devices=1.")
        options = dict(max_steps=max_steps, batch_size=batch_size, lr=lr, n_particles=n_particles,
                       estimator=estimator, weighting=weighting, weight_decay=weight_decay, clip_norm=clip_norm,
                       val_every=val_every, early_stopping_patience=early_stopping_patience, seed=seed,
                       schedules=schedules, lr_globals=lr_globals, inference=inference,
                       checkpoint_every=checkpoint_every, sampling=sampling, bootstrap=bootstrap)
        if not parallel:
            self._fit(None, options, progress=progress, callback=callback, checkpoint=checkpoint)
        else:
            from samsvae_pyro.infer.distributed import launch

            self.trainer = None  # not picklable with its optimizer hooks; rebuilt in each process
            with tempfile.TemporaryDirectory() as scratch:  # process 0's result (too large for launch's pipe)
                result = Path(scratch) / "result.pt"
                launch(_fit_replica, self, options, progress, callback, checkpoint, str(result), devices=devices,
                       accelerator=accelerator, strategy=strategy, num_nodes=num_nodes)
                state = torch.load(result, map_location=self.device, weights_only=False)
            self.trainer_state = state
            self.model.load_state_dict(state["final"]["model"])
            self.guide.load_state_dict(state["final"]["guide"])
            self.history = pd.DataFrame(state["history"], columns=HISTORY_COLUMNS)
        self.trainer_state["arguments"] = _storable(options)
        return self.history

    def resume(self, *, progress: bool = True, callback: Callable | None = None, checkpoint: Callable | None = None,
               **overrides: Any) -> pd.DataFrame:
        """Continue an interrupted :meth:`train` (after :meth:`load` of its last checkpoint) to its step count,
        with its saved arguments; ``overrides`` replace some (``devices``, ``accelerator``, ``strategy``,
        ``num_nodes`` for this part; callable ``schedules`` must be passed again, they are not saved)."""
        state = self.trainer_state
        if state is None or "arguments" not in state:
            raise ValueError("Nothing to resume: this model holds no checkpoint of an interrupted train() "
                             "(train it, or load a run directory written with checkpoint_every).")
        arguments = dict(state["arguments"])
        remaining = max(state.get("target_steps", 0) - state["counters"][0], 0)
        if remaining == 0:
            return self.history if self.history is not None else pd.DataFrame(state["history"])
        return self.train(**{**arguments, **overrides, "max_steps": remaining}, progress=progress,
                          callback=callback, checkpoint=checkpoint)

    def _fit(self, replicas, options: dict, *, progress: bool, callback, checkpoint) -> None:
        """Build the trainer (in this process) and run it; ``replicas``: the collectives of a parallel run."""
        options_in, options = options, dict(options)
        max_steps, batch_size, seed = options.pop("max_steps"), options.pop("batch_size"), options["seed"]
        sampling = options.pop("sampling", "auto")  # absent from checkpoints written before the option
        resample = options.pop("bootstrap", None)  # idem
        hooks = inference_hooks(options.pop("inference"), self.model, self.guide, max_steps=max_steps, seed=seed)
        shards = {} if replicas is None else dict(rank=replicas.rank, world_size=replicas.world_size)
        counts = {s: torch.as_tensor(self.data.cells_per_perturbation(s), dtype=torch.float32, device=self.device)
                  for s in ("train", "val") if _has_cells(self.data, s)}
        self.trainer = SVITrainer(
            self.model, self.guide, estimator=options["estimator"], n_particles=options["n_particles"],
            lr=options["lr"], weight_decay=options["weight_decay"], clip_norm=options["clip_norm"],
            weighting=options["weighting"], cells_per_perturbation=counts, schedules=options["schedules"],
            lr_globals=options["lr_globals"], hooks=hooks, replicas=replicas,
        )
        if self.trainer_state is not None:
            self.trainer.load_state_dict(self.trainer_state)
        cells = self.data.indices("train")
        if resample is not None:
            cells = bootstrap_cells(self.data.labels, cells, seed=resample)
        train = self.loader(cells, batch_size=batch_size, shuffle=True, seed=seed, sampling=sampling, **shards)
        val = self.loader("val", batch_size=batch_size, even_shards=False, **shards) if "val" in counts else None
        save = None if checkpoint is None else partial(_save_checkpoint, self, checkpoint, _storable(options_in))
        self.history = self.trainer.fit(
            train, val, max_steps=self.trainer.step + max_steps, val_every=options["val_every"],
            early_stopping_patience=options["early_stopping_patience"], seed=seed, progress=progress,
            callback=callback, checkpoint_every=options["checkpoint_every"], checkpoint=save,
        )
        self.trainer_state = self.trainer.state_dict()

    # ---------------------------------------------------------------- posterior accessors
    def _global_trace(self, n_samples: int):
        return guide_trace(self.guide, self.example_batch(1), n_samples)

    @_threaded
    def mask_probabilities(self, n_samples: int = 100) -> pd.DataFrame:
        """Posterior inclusion probabilities q(m_tk = 1), (T, K), indexed by perturbation name."""
        return self._frame(site_mean(self._global_trace(n_samples), MASK))

    @_threaded
    def perturbation_embeddings(self, n_samples: int = 100) -> pd.DataFrame:
        """Posterior mean embeddings E[e_tk], (T, K), indexed by perturbation name."""
        return self._frame(site_mean(self._global_trace(n_samples), E))

    def _frame(self, values: torch.Tensor) -> pd.DataFrame:
        return latent_frame(values, self.data.vocabulary.perturbations)

    @_threaded
    def posterior_effects(self, n_samples: int = 100, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Posterior mean effects E_q[e_tk m_tk] and inclusion probabilities q(m_tk = 1), (T, K) each.

        Averaged per joint draw of the globals (:func:`samsvae_pyro.evaluate.posterior_effects`); the
        inclusion probabilities are ``None`` for a family without a mask. Indexed by perturbation name.
        """
        with seeded(seed, self.device):
            effects, inclusion = posterior_effects(self.model, self.guide, self.example_batch(1), n_samples=n_samples)
        return self._frame(effects), None if inclusion is None else self._frame(inclusion)

    @_threaded
    def decoder_response(self, n_basal: int = 256, *, shift: float = 1.0, seed: int = 0) -> pd.DataFrame:
        """Mean change of each gene's expected expression for a shift of each latent dim, (K, G).

        Units and method: :func:`samsvae_pyro.evaluate.decoder_response`; indexed by ``latent_k``, one column per gene.
        """
        with seeded(seed, self.device):
            response = decoder_response(self.model, device=self.device, n_basal=n_basal, shift=shift)
        return pd.DataFrame(response.cpu().numpy(), index=[f"latent_{k}" for k in range(len(response))],
                            columns=pd.Index(self.data.var_names, name="gene"))

    @_threaded
    @torch.no_grad()
    def get_latent_representation(self, adata: ad.AnnData | None = None, *, kind: LatentKind = "basal",
                                  n_samples: int = 10, batch_size: int = 512) -> np.ndarray:
        """Posterior mean latents per cell: ``"basal"`` (z_basal) or ``"perturbed"`` (the model's z).

        The perturbed latent is the model's return value replayed on the guide's draws, e.g. z_basal + d (E * M)
        for SAMS-VAE. Shapes: returns (N, K) for the cells of ``adata`` (default: the training AnnData).
        """
        if kind not in LATENT_KINDS:
            raise ValueError(f"kind={kind!r} is not supported; choose one of {list(LATENT_KINDS)}.")
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

    @_threaded
    def iwelbo(self, adata: ad.AnnData | None = None, *, split: str | None = "test", n_particles: int = 100,
               batch_size: int = 128, kind: IwelboKind = "predictive", seed: int = 0) -> pd.Series | float:
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

    @_threaded
    def model_ate(self, conditions: str | list[str] | None = None, *, n_global_draws: int = 50,
                  samples_per_draw: int = 50, method: AteMethod = "perturbseq", interval: float = 0.9,
                  max_elements: float = 2e7, seed: int = 0, ensemble: Sequence[PerturbationModel] = ()) -> ad.AnnData:
        """Posterior-predictive ATE per condition vs control, with credible intervals from the posterior over (E, M).

        Returns AnnData (conditions x genes): X the posterior mean ATE, layers "lower"/"upper" the
        equal-tailed ``interval`` over ``n_global_draws`` independent global draws, obs the split flags.
        ``ensemble``: other models fitted to the same data (e.g. with other seeds); their draws are pooled with
        this one's (a mixture of the fits' posteriors), which adds the spread between fits that one fit's
        intervals leave out (README "Calibrated treatment effects").
        Conditions (a label or a list) default to every observed condition, named as in your obs column
        (a combination keeps your member order, e.g. "KLF1+CEBPA"); any member order is accepted as input.
        Unseen combinations of known perturbations work
        with the "sum" encoding (with "unique", only under ``setup_anndata(..., vocabulary="all")``,
        where their untrained columns give predictions from the prior).
        """
        conditions = (_as_labels(conditions) if conditions is not None
                      else [self.data.user_label(c) for c in self.data.conditions()])
        D = self._dosages(conditions)
        with seeded(seed, self.device):
            draws = torch.cat([model_ate_draws(model, guide, self.example_batch(1), D, n_global_draws=n_global_draws,
                                               samples_per_draw=samples_per_draw, method=method,
                                               max_elements=max_elements)
                               for model, guide in self._fits(ensemble)])
        summary = summarise_draws(draws, interval=interval)
        return ate_anndata(summary["mean"], conditions, self.data.var_names,
                           layers={"lower": summary["lower"], "upper": summary["upper"]},
                           obs=condition_split_flags(self.data, self.data.canonical_labels(conditions)))

    @_threaded
    def check(self, adata: ad.AnnData | None = None, *, split: str | None = "test", n_samples: int = 20,
              modes: tuple[CheckMode, ...] = MODES, batch_size: int = 256, seed: int = 0) -> PosteriorPredictiveCheck:
        """Posterior predictive checks: replicate the observed cells from the model and compare, statistic by statistic.

        Checks the ``split`` of the training AnnData (``None``: every cell), or every cell of ``adata`` when given.
        ``modes``: ``"in_sample"`` (z_basal from the encoder) and ``"generative"`` (z_basal from the prior);
        statistics per gene, cell, condition (shift from control, variance and zero-fraction change, interactions
        of combinations) and data set, each with its observed value, replicated distribution over ``n_samples``
        replicates and predictive p-value; ``check.summary()`` is the table of flagged fractions, r2 and the
        coverage of the count predictive intervals. Several runs side by side: :func:`samsvae_pyro.evaluate.
        criticism.compare_checks`; details: :func:`samsvae_pyro.evaluate.criticism.posterior_predictive_check`.
        """
        data, cells = self._cells(adata, split)
        with seeded(seed, self.device):
            return posterior_predictive_check(self.model, self.guide, data, cells, n_samples=n_samples, modes=modes,
                                              batch_size=batch_size, device=self.device)

    @_threaded
    def to_inference_data(self, adata: ad.AnnData | None = None, *, split: str | None = "test", max_cells: int = 500,
                          n_samples: int = 20, mode: CheckMode = "in_sample", seed: int = 0):
        """ArviZ ``InferenceData`` (optional extra ``[arviz]``): global sites, replicated and observed counts of at
        most ``max_cells`` cells (a seeded random subset) of ``split`` or of ``adata``. Which ArviZ functions are
        valid for this amortised model: :mod:`samsvae_pyro.evaluate.criticism.inference_data`.
        """
        data, cells = self._cells(adata, split)
        if len(cells) > max_cells:
            cells = np.sort(np.random.default_rng(seed).choice(cells, max_cells, replace=False))
        with seeded(seed, self.device):
            return to_inference_data(self.model, self.guide, data, cells, n_samples=n_samples, mode=mode,
                                     device=self.device)

    @_threaded
    def ate_calibration(self, cells: str | np.ndarray = "test", *, truth: dict | None = None, seed: int = 0,
                        ensemble: Sequence[PerturbationModel] = (), **options: Any) -> dict[str, Any]:
        """Are the ATE intervals calibrated? Posterior-predictive coverage of held-out cells' data ATE, per condition.

        ``cells``: a split name or row positions of held-out cells (with control cells among them). With a
        simulator's ``truth`` (``adata.uns["sams_truth"]``), also the coverage of the true ATE by the population
        intervals. ``ensemble``: other models fitted to the same data (e.g. with other seeds), whose posterior
        draws are pooled with this one's. Returns coverage at 50/80/90/95%, Pearson r, slope and calibration
        slope, a per-condition table: :func:`samsvae_pyro.evaluate.calibration.ate_calibration` (``options``
        are passed to it).
        """
        fits = self._fits(ensemble)
        rows = self.data.indices(cells) if isinstance(cells, str) else np.asarray(cells)
        options.setdefault("method", ate_method(self.model.head.is_count))
        with seeded(seed, self.device):
            return ate_calibration(self.model, self.guide, self.data, self.example_batch(1), rows, truth=truth,
                                   ensemble=fits[1:], **options)

    def _fits(self, ensemble: Sequence[PerturbationModel]) -> list[tuple]:
        """(model, guide) of this model and of each ensemble member, checked to be fitted to the same data."""
        for other in ensemble:
            if (list(other.data.var_names) != list(self.data.var_names)
                    or list(other.data.vocabulary.perturbations) != list(self.data.vocabulary.perturbations)):
                raise ValueError("every model of an ensemble must be fitted to the same data (genes and "
                                 "perturbations in the same order); set them up from the same AnnData.")
        return [(self.model, self.guide), *((other.model, other.guide) for other in ensemble)]

    def _dosages(self, conditions: list[str]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.data.condition_dosages(conditions)), dtype=torch.float32,
                               device=self.device)

    @_threaded
    @torch.no_grad()
    def predict(self, perturbations: str | list[str], *, mode: PredictMode = "generative",
                source: ad.AnnData | None = None, n_cells: int = 100, library: float = TARGET_LIBRARY,
                seed: int = 0) -> ad.AnnData:
        """Sample cells under a perturbation label or a list of them (combinations too, including ones never
        observed together).

        ``mode="generative"``: ``n_cells`` cells per perturbation with z_basal from the prior, each with its own
        posterior draw of (E, M), at library size ``library``. ``mode="counterfactual"``: z_basal inferred from
        each ``source`` cell (default: every control cell of the training AnnData, all splits) with its own
        dosage, then shifted by each requested perturbation, at the source cell's library size. A ``source`` AnnData needs the training
        data's genes, counts layer and perturbation labels (obs column or dosage columns, as registered).

        Returns AnnData (cells x genes): raw count samples in ``layers["counts"]``, log1p of counts
        normalised to 1e4 in ``X``, ``obs["perturbation"]`` (and ``obs["source_cell"]`` for counterfactuals).
        """
        if mode not in PREDICT_MODES:
            raise ValueError(f"mode={mode!r} is not supported; choose one of {list(PREDICT_MODES)}.")
        labels = _as_labels(perturbations)
        D = self._dosages(labels)
        with seeded(seed, self.device):
            if mode == "generative":
                counts = generative_counts(self.model, self.guide, self.example_batch(1), D, n_cells=n_cells,
                                           library=library)
                obs = pd.DataFrame({"perturbation": np.repeat(labels, n_cells)})
            else:
                data = self._source_data(source)
                cells = np.arange(data.n_cells) if source is not None else np.flatnonzero(self.data.control_mask)
                batches = self.loader(cells, batch_size=max(1, 4096 // len(labels)), data=data)
                counts, index = counterfactual_counts(self.model, self.guide, batches, D)
                names = data.obs_names[index.cpu().numpy()]
                obs = pd.DataFrame({"perturbation": np.repeat(labels, len(names)),
                                    "source_cell": np.tile(names, len(labels))})
        return prediction_anndata(counts, obs, self.data.var_names)

    def _source_data(self, source: ad.AnnData | None) -> PerturbationData:
        """The design of counterfactual source cells; errors say what a source AnnData needs."""
        try:
            return self._data_for(source)
        except ValueError as error:
            layer = self.setup.get("layer")
            labels_at = (f"obs[{self.setup['perturbation_key']!r}]" if "perturbation_key" in self.setup
                         else f"the dosage columns {self.setup.get('dosage_columns')!r}")
            raise ValueError(f"source (the cells to shift): {error} Source cells need the training data's counts (in "
                             f"{'adata.X' if layer is None else f'layers[{layer!r}]'}) and their own conditions in "
                             f"{labels_at} (e.g. the control label), from which their basal state is inferred."
                             ) from error

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write parameters, trainer state (to resume) and the configuration to ``directory``.

        Both files or neither replace a previous save (:mod:`samsvae_pyro.api.persistence`); a model with a
        custom guide saves too, and :meth:`load` then needs the same guide factory.
        """
        return save_model(self, directory, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path, adata: ad.AnnData, *, guide: GuideFactory | None = None,
             device: str | None = "auto", threads: int | None = DEFAULT_THREADS):
        """Re-create a saved model on ``adata`` (same genes and perturbation vocabulary); ``device`` and
        ``threads`` as in the constructor.

        ``guide``: for a model saved with a custom guide, the same factory (or a fresh guide module).
        A missing or damaged file raises :class:`~samsvae_pyro.api.persistence.SavedModelError` naming it.
        """
        directory = Path(directory)
        config = read_model_config(directory)
        if config["class"] != cls.__name__:
            raise ValueError(f"{directory} holds a saved {config['class']}; load it with {config['class']}.load "
                             "or samsvae_pyro.runs.load_run(dir, adata).")
        state = read_checkpoint(directory, config, choose_device(device))
        obj = cls(with_setup(adata, config["setup"]), guide=guide_for_load(config, guide, directory),
                  guide_kwargs=config["guide_kwargs"], device=device, threads=threads, **config["model_kwargs"])
        _check_same_design(obj.data, config)
        load_state(obj, state, directory / CHECKPOINT)
        return obj


def _save_checkpoint(model: PerturbationModel, checkpoint: Callable, arguments: dict, trainer: SVITrainer,
                     state: dict) -> None:
    """Bring ``model``'s trainer state and history to this step, then hand it to the caller's ``checkpoint``."""
    model.trainer_state = {**state, "arguments": arguments}
    model.history = trainer.history_frame()
    checkpoint(model)


def _fit_replica(replicas, model: PerturbationModel, options: dict, progress: bool, callback, checkpoint,
                 result: str) -> None:
    """One process of a data-parallel :meth:`PerturbationModel.train`; process 0 writes the trainer state with
    the final parameters (the best-validation ones, as restored) and the history to ``result``."""
    # Spawned processes receive tensors in shared memory: without private copies every process would
    # step the same parameters (and optimizer state).
    with torch.no_grad():
        for tensor in [*model.model.parameters(), *model.model.buffers(), *model.guide.parameters(),
                       *model.guide.buffers()]:
            tensor.data = tensor.data.to(replicas.device, copy=True)
    model.trainer_state = copy.deepcopy(model.trainer_state)
    model.device = replicas.device
    with torch_threads(model.threads):
        model._fit(replicas, options, progress=progress, callback=callback, checkpoint=checkpoint)
    state = _to_cpu(model.trainer_state)
    state["final"] = _to_cpu({"model": model.model.state_dict(), "guide": model.guide.state_dict()})
    if replicas.is_main:
        torch.save(state, result)


def _storable(options: dict) -> dict:
    """The train() arguments as saved with a checkpoint: callable schedules cannot be, and are left out."""
    schedules = options.get("schedules") or {}
    return {**options, "schedules": {k: v for k, v in schedules.items() if not callable(v)} or None}


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _as_labels(labels: str | list[str]) -> list[str]:
    """A single label as a one-element list; a list (or other iterable) of labels as a list."""
    return [labels] if isinstance(labels, str) else list(labels)


def _has_cells(data: PerturbationData, split: str) -> bool:
    return bool((data.split == split).any())


def _check_same_design(data: PerturbationData, config: dict) -> None:
    if list(map(str, data.var_names)) != config["var_names"]:
        raise ValueError("The genes of this AnnData differ from the saved model's; subset and order them as "
                         "in the training data (config.json lists them).")
    if data.vocabulary.to_dict() != config["vocabulary"]:
        raise ValueError("The perturbation vocabulary built from this AnnData differs from the saved model's; "
                         "load with the training AnnData (same labels and split).")
