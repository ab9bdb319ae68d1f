"""The one SVI training loop every model family uses (docs/model.md, section 3).

Adam with weight decay, global gradient-norm clipping, validation every ``val_every`` steps with the
best checkpoint kept in memory and restored at the end, optional early stopping, a clear error on a
non-finite loss, a tqdm bar, and a history DataFrame. Checkpoints (``state_dict``) include the
optimizer state, the position in the data stream and the random state, so a resumed run continues
exactly where it stopped.

Pyro's validation (distribution argument and support checks, ELBO sanity checks) runs on the first
training step of a trainer and is then switched off (unless ``validate_every_step=True``): it costs a
few percent of a step at paper sizes, the data were validated when loaded, and with the built-in
models and guides a later failure (NaN parameters) also makes the loss or the gradient non-finite,
which the trainer detects itself. A global ``pyro.enable_validation(False)`` is respected throughout.

Off the CPU a step copies from the device once: the loss stays there
(:func:`~samsvae_pyro.infer.estimators.loss_on_device`) and comes back together with the gradient norm for
the divergence check; every copy waits for the queued kernels, so fewer of them let the host run ahead.

The same loop runs in every process of a data-parallel run (``replicas``, see
:mod:`samsvae_pyro.infer.distributed`): gradients and the loss are averaged after each backward pass,
validation sums are reduced, and the RNG state of every process goes into the checkpoint.

Long runs: ``fit(checkpoint_every=n, checkpoint=f)`` calls ``f(trainer, state)`` on process 0 every
``n`` steps with :meth:`SVITrainer.state_dict`; where and how it is written is the caller's business
(the API writes it atomically into the run directory), so a run killed at any point resumes from there.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterable

import pandas as pd
import pyro
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from samsvae_pyro._typing import Batch
from samsvae_pyro.infer.distributed import Replicas
from samsvae_pyro.infer.estimators import loss_on_device, make_elbo
from samsvae_pyro.infer.options import check_training_arguments
from samsvae_pyro.infer.schedules import LatentScale, ScheduleSpec, make_schedules
from samsvae_pyro.infer.weighting import weighting_context


HISTORY_COLUMNS = ["step", "epoch", "train_loss", "val_loss", "seconds"]


class TrainingDivergedError(FloatingPointError):
    """The loss or the gradient became non-finite; the best checkpoint has been restored."""


def _adam(params: list[nn.Parameter], **options) -> torch.optim.Adam:
    """Adam with the fused kernel (one call per parameter tensor instead of about a dozen) where torch has it."""
    try:
        return torch.optim.Adam(params, fused=True, **options)
    except RuntimeError:  # a device without the fused kernel (older torch versions: no CPU kernel)
        return torch.optim.Adam(params, **options)


def _param_groups(modules: nn.Module, guide: nn.Module, lr_globals: float | None) -> list:
    """All parameters in one group, or the guide's global parameters in a second group with ``lr_globals``."""
    if lr_globals is None:
        return list(modules.parameters())
    if not hasattr(guide, "global_parameters"):
        raise ValueError("lr_globals needs a guide that lists its global parameters (guide.global_parameters()); "
                         "the built-in guides do. Leave lr_globals=None for this guide.")
    chosen = {id(p) for p in guide.global_parameters()}
    rest = [p for p in modules.parameters() if id(p) not in chosen]
    return [{"params": rest}, {"params": list(guide.global_parameters()), "lr": lr_globals}]


class SVITrainer:
    """Stochastic variational inference for a (model, guide) pair.

    Parameters
    ----------
    model, guide
        Pyro model and guide (``nn.Module`` s holding every learnable parameter).
    estimator, n_particles
        See :func:`samsvae_pyro.infer.make_elbo`.
    lr, weight_decay, clip_norm
        Adam learning rate, L2 weight decay, and the global gradient-norm bound (``None``: no clipping).
    weighting
        ``"plated"`` or ``"per_perturbation"`` (see :mod:`samsvae_pyro.infer.weighting`).
    cells_per_perturbation
        ``{"train": (T,), "val": (T,)}`` counts N_t for the per-perturbation weighting.
    validate_every_step
        Keep Pyro's validation on for every step, not only the first (see the module docstring).
    schedules
        ``{"kl_weight" | "global_kl_weight" | "mask_temperature": spec}`` (see :mod:`samsvae_pyro.infer.schedules`).
    lr_globals
        Learning rate of the guide's global variational parameters (``guide.global_parameters()``);
        ``None``: ``lr`` for everything.
    hooks
        Objects changing the optimisation itself (see :mod:`samsvae_pyro.infer.sparse_mask`): each may
        define ``configure_optimizer(trainer)`` (once, here), ``before_step(trainer)``, ``penalty(trainer)``
        (a scalar tensor or ``None``, added to the minimised loss; the reported loss stays the -ELBO) and
        ``after_step(trainer)``.
    replicas
        The collectives of a data-parallel run (:class:`~samsvae_pyro.infer.distributed.Replicas`);
        ``None``: one process.
    """

    def __init__(
        self, model: nn.Module, guide: nn.Module, *, estimator: str = "trace", n_particles: int = 5,
        lr: float = 3e-4, weight_decay: float = 1e-6, clip_norm: float | None = 100.0,
        weighting: str = "plated", cells_per_perturbation: dict[str, Tensor] | None = None,
        validate_every_step: bool = False, schedules: dict[str, ScheduleSpec] | None = None,
        lr_globals: float | None = None, hooks: Iterable = (), replicas: Replicas | None = None,
    ):
        check_training_arguments(n_particles=n_particles, lr=lr, weight_decay=weight_decay, clip_norm=clip_norm,
                                 lr_globals=lr_globals)
        self.hooks = list(hooks)
        self.replicas = replicas
        self.modules = nn.ModuleDict({"model": model, "guide": guide})
        self._on_cpu = next(self.modules.parameters()).device.type == "cpu"
        self.schedules = make_schedules(schedules)
        if "mask_temperature" in self.schedules and not hasattr(getattr(guide, "mask", None), "temperature"):
            raise ValueError("A mask_temperature schedule needs a guide with a relaxed mask (guide.mask.temperature); "
                             "this guide has none.")
        self.kl_weights = (1.0, 1.0)
        self.elbo = make_elbo(estimator, n_particles=n_particles)
        self.weighting, self.counts = weighting, cells_per_perturbation or {}
        self.clip_norm = clip_norm
        self.validate_every_step, self._validated = validate_every_step, False
        self.optimizer = _adam(_param_groups(self.modules, guide, lr_globals), lr=lr, weight_decay=weight_decay)
        self._call_hooks("configure_optimizer")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_val, self.best_step, self.best_state = math.inf, 0, None
        self.history: list[dict] = []
        self.last_state: dict | None = None  # parameters at the last step, before the best is restored
        self.target_steps = 0  # the max_steps of the last fit (what a resumed run continues to)
        self.stale = 0  # validation passes since the best one (early stopping)

    def loss(self, batch: Batch, split: str = "train", *, grad: bool = True) -> float | Tensor:
        """-ELBO per cell for one batch.

        With ``grad``, the gradients are accumulated into the parameters; off the CPU the loss is then returned
        as a 0-dim float64 tensor on the device, so that computing it waits for nothing
        (:func:`~samsvae_pyro.infer.estimators.loss_on_device`; on the CPU a float costs less). Without
        ``grad``, a float.
        """
        model, guide = self.modules["model"], self.modules["guide"]
        with self._checks(), weighting_context(self.weighting, batch, self.counts.get(split)):
            if grad:
                with LatentScale(*self.kl_weights), self._loss_context():
                    value = self.elbo.loss_and_grads(model, guide, batch)
                self._validated = True
                return value
            with torch.no_grad():
                return self.elbo.loss(model, guide, batch)

    def _loss_context(self):
        """:func:`~samsvae_pyro.infer.estimators.loss_on_device` off the CPU, where every copy to the host waits
        for the queued kernels; nothing on the CPU, where Pyro's floats cost less than tensor arithmetic."""
        return contextlib.nullcontext() if self._on_cpu else loss_on_device(self.elbo)

    def _checks(self):
        """Pyro's validation as globally set until a training step has passed it, then off (unless every step)."""
        if self.validate_every_step or not self._validated:
            return contextlib.nullcontext()
        return pyro.validation_enabled(False)

    def validation_loss(self, loader: Iterable[Batch], *, seed: int = 0) -> float:
        """Mean -ELBO per cell over a whole split, with its own fixed random stream."""
        total, n = 0.0, 0
        device = next(self.modules.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            pyro.set_rng_seed(seed)
            for batch in loader:
                size = len(batch["index"])
                total += self.loss(batch, "val", grad=False) * size
                n += size
        if self.replicas is not None:  # each process validated its shard: sum over processes
            total, n = self.replicas.sum(torch.tensor([total, float(n)], dtype=torch.float64)).tolist()
        return total / n

    def _apply_schedules(self) -> None:
        values = {name: schedule(self.step) for name, schedule in self.schedules.items()}
        self.kl_weights = (values.get("kl_weight", 1.0), values.get("global_kl_weight", 1.0))
        if "mask_temperature" in values:
            self.modules["guide"].mask.temperature = values["mask_temperature"]

    def _call_hooks(self, method: str) -> list:
        return [getattr(hook, method)(self) for hook in self.hooks if hasattr(hook, method)]

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on ``batch``; returns the -ELBO per cell (off the CPU, read in the step's only
        device-to-host copy, together with the gradient norm)."""
        self._apply_schedules()
        self._call_hooks("before_step")
        self.optimizer.zero_grad(set_to_none=True)
        try:
            value = self.loss(batch)
        except ValueError as error:  # distribution argument checks catch NaN parameters first
            if "invalid values" not in str(error):
                raise
            value = math.nan
        penalties = [p for p in self._call_hooks("penalty") if p is not None]
        if penalties:
            sum(penalties).backward()
        if self.replicas is not None:
            value = self.replicas.average_gradients(self.modules.parameters(), value)
        if self.clip_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.modules.parameters(), self.clip_norm)
        else:
            norm = value.new_zeros(()) if torch.is_tensor(value) else 0.0
        if torch.is_tensor(value):  # kept on the device: one wait for it per step, for the loss and the norm
            value, norm = torch.stack([value, norm.to(value.dtype)]).tolist()
        if not (math.isfinite(value) and math.isfinite(norm)):
            self._diverged(value)
        self.optimizer.step()
        self.step += 1
        self._call_hooks("after_step")
        return value

    def _diverged(self, value: float) -> None:
        where = f"step {self.step + 1} (epoch {self.epoch}, batch {self.batch_in_epoch})"
        kept = "no checkpoint was kept yet"
        if self.best_state is not None:
            self.modules.load_state_dict(self.best_state)
            kept = f"the best checkpoint (step {self.best_step}) was restored"
        raise TrainingDivergedError(
            f"Training diverged at {where}: loss {value}, or a non-finite gradient; {kept}. "
            "Lower the learning rate, keep gradient clipping on, or check the data for extreme values."
        )

    def _batches(self, loader) -> Iterable[Batch]:
        """Endless stream of training batches, resuming at (epoch, batch_in_epoch)."""
        while True:
            loader.set_epoch(self.epoch, start=self.batch_in_epoch)  # a resumed epoch's earlier batches are not read
            for position, batch in enumerate(loader, start=self.batch_in_epoch):
                self.batch_in_epoch = position + 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _validate(self, val_loader, seed: int) -> float:
        val = self.validation_loss(val_loader, seed=seed)
        if val < self.best_val:
            self.best_val, self.best_step = val, self.step
            self.best_state = {k: v.detach().clone() for k, v in self.modules.state_dict().items()}
        return val

    def fit(
        self, train_loader, val_loader=None, *, max_steps: int, val_every: int = 500,
        early_stopping_patience: int | None = None, seed: int = 0, progress: bool = True,
        callback: Callable[["SVITrainer"], None] | None = None, checkpoint_every: int | None = None,
        checkpoint: Callable[["SVITrainer", dict], None] | None = None,
    ) -> pd.DataFrame:
        """Train until ``max_steps`` (total, counting earlier runs) and return the history.

        The best-validation checkpoint is restored at the end (the last one without validation data).
        ``callback(trainer)`` runs after every step (schedules, logging), in every process of a
        data-parallel run (``trainer.replicas.rank`` tells which). ``checkpoint(trainer, state)`` runs on
        process 0 every ``checkpoint_every`` steps with the resumable :meth:`state_dict`.
        """
        check_training_arguments(max_steps=max_steps, val_every=val_every,
                                 early_stopping_patience=early_stopping_patience, seed=seed)
        if self.step == 0:
            pyro.set_rng_seed(seed if self.replicas is None else seed * 100_003 + self.replicas.rank)
        self.target_steps, self.last_state = max_steps, None
        main = self.replicas is None or self.replicas.is_main
        start = time.perf_counter()
        bar = tqdm(total=max_steps, initial=self.step, disable=not (progress and main), desc="training", unit="step")
        stream = self._batches(train_loader)
        while self.step < max_steps:
            batch = next(stream)
            row = {"step": self.step + 1, "epoch": self.epoch, "train_loss": self.train_step(batch),
                   "val_loss": math.nan}
            if val_loader is not None and (self.step % val_every == 0 or self.step == max_steps):
                best_before = self.best_val
                row["val_loss"] = self._validate(val_loader, seed)
                self.stale = 0 if self.best_val < best_before else self.stale + 1
            row["seconds"] = time.perf_counter() - start
            self.history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", refresh=False)
            if callback is not None:
                callback(self)
            if checkpoint is not None and checkpoint_every and self.step % checkpoint_every == 0:
                state = self.state_dict()  # every process: gathering the RNG states is collective
                if main:
                    checkpoint(self, state)
            if early_stopping_patience is not None and self.stale >= early_stopping_patience:
                break
        bar.close()
        self._restore_best(val_loader is not None)
        return self.history_frame()

    def _restore_best(self, validated: bool) -> None:
        self.last_state = {k: v.detach().clone() for k, v in self.modules.state_dict().items()}
        if validated and self.best_state is not None:
            self.modules.load_state_dict(self.best_state)

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history, columns=HISTORY_COLUMNS)

    def state_dict(self) -> dict:
        """Everything needed to resume: last-step parameters, optimizer, counters, best checkpoint, RNG, history."""
        return {
            "modules": self.last_state or self.modules.state_dict(), "optimizer": self.optimizer.state_dict(),
            "counters": (self.step, self.epoch, self.batch_in_epoch), "best": (self.best_val, self.best_step),
            "best_state": self.best_state, "history": self.history, "target_steps": self.target_steps,
            "stale": self.stale,
            "rng": torch.get_rng_state() if self.replicas is None else self.replicas.gather_rng(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.modules.load_state_dict(state["modules"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch, self.batch_in_epoch = state["counters"]
        self.best_val, self.best_step = state["best"]
        self.best_state, self.history = state["best_state"], list(state["history"])
        self.target_steps, self.stale = state.get("target_steps", self.step), state.get("stale", 0)
        rng = state["rng"]
        if isinstance(rng, list):  # a data-parallel run's states, one per process
            rng = rng[self.replicas.rank] if self.replicas is not None and len(rng) == self.replicas.world_size \
                else rng[0]
        torch.set_rng_state(rng)
