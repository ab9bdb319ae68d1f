"""Posterior predictive checks of a fitted model on observed cells (issue 16).

Replicated data come from the one Pyro model: for each of R replicates, one draw of the global sites
from the guide (:func:`~samsvae_pyro.evaluate.predictive.sample_globals`), shared by every cell of that
replicate, then counts x_rep ~ p(x | z_basal, D, l) for every checked cell with its own conditions D and
library size l (:func:`~samsvae_pyro.evaluate.predictive.sample_x`). The two modes differ in z_basal:

- ``"in_sample"``: z_basal from the guide's encoder applied to the observed cell, given the replicate's
  globals (:func:`~samsvae_pyro.evaluate.predictive.local_posterior`). Replicates of these very cells:
  checks the likelihood and the decoder (variance, zeros, library), but an encoder can absorb a wrong
  perturbation effect into z_basal, so it is a weak check of the effects.
- ``"generative"``: z_basal from the prior. New cells with the observed conditions and library sizes:
  checks what the model says about each condition (shifts from control, interactions) without looking at
  the cells.

Statistics (:mod:`.statistics`) are streamed over minibatches: no replicated count matrix is kept, so
the memory is that of one batch of R x B x G counts plus the per-condition sums, 3 x R x C x G floats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from samsvae_pyro._typing import Batch, CheckMode
from samsvae_pyro.data import MinibatchLoader, PerturbationData
from samsvae_pyro.evaluate.criticism.discrepancy import COMPARISON_COLUMNS, SUMMARY_COLUMNS, compare, summarise
from samsvae_pyro.evaluate.criticism.statistics import (
    CountMoments, cell_statistics, condition_statistics, count_pit, covered, dataset_statistics, gene_statistics,
    LEVELS, interactions, statistic,
)
from samsvae_pyro.evaluate.predictive import GlobalDraws, local_posterior, sample_globals, sample_x
from samsvae_pyro.models.plates import Z_BASAL

MODES: tuple[str, ...] = get_args(CheckMode)
COVERAGE_LEVELS = (0.5, 0.9)
INDEX = ("mode", "level", "statistic")


@dataclass
class PosteriorPredictiveCheck:
    """Observed vs replicated statistics of one fitted model on one set of cells.

    Attributes
    ----------
    table
        One row per (mode, level, statistic, condition, unit): the unit is a gene, a cell, or ``"all"``
        (data-set level); ``condition`` is the condition of a per-condition row (else empty); then the
        columns of :func:`~samsvae_pyro.evaluate.criticism.discrepancy.compare` (observed value,
        replicated mean, sd and interval, z, p_value).
    coverage
        Fraction of observed counts (cells x genes) inside their central 50% / 90% predictive interval,
        per mode (randomised PIT, :func:`~samsvae_pyro.evaluate.criticism.statistics.count_pit`).
    n_samples
        R, the number of replicated data sets.
    skipped
        Statistics not computed, with the reason (e.g. no control cells among the checked cells).
    """

    table: pd.DataFrame
    coverage: pd.DataFrame
    n_samples: int
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self, *, threshold: float = 0.01) -> pd.DataFrame:
        """One row per (mode, level, statistic): ``n``, ``flagged`` (fraction with p < threshold), ``r2``,
        ``median_z``; then a row (mode, "count", "interval") per mode with ``coverage_50`` and ``coverage_90``.
        """
        rows = {key: summarise(group, log_scale=statistic(key[1], key[2]).log_scale, threshold=threshold)
                for key, group in self.table.groupby(list(INDEX), sort=False, observed=True)}
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_COLUMNS))
        coverage = self.coverage.rename(columns=lambda level: f"coverage_{round(100 * level)}")
        coverage.index = pd.MultiIndex.from_tuples([(mode, "count", "interval") for mode in coverage.index])
        coverage["n"] = self.coverage.attrs.get("n_entries", np.nan)
        frame = pd.concat([frame, coverage])
        frame.index = frame.index.set_names(list(INDEX))
        modes, levels = list(self.coverage.index), [*LEVELS, "count"]
        order = sorted(range(len(frame)), key=lambda i: (modes.index(frame.index[i][0]),
                                                        levels.index(frame.index[i][1])))
        return frame.iloc[order]

    def select(self, level: str, name: str, *, mode: str | None = None) -> pd.DataFrame:
        """Rows of one statistic (of one mode, if given)."""
        statistic(level, name)  # a clear error for an unknown statistic
        rows = (self.table["level"] == level) & (self.table["statistic"] == name)
        if mode is not None:
            rows &= self.table["mode"] == mode
        return self.table[rows]

    def to_dict(self, *, threshold: float = 0.01) -> dict:
        """The summary as nested plain values {mode: {level: {statistic: {measure: value}}}}, for JSON."""
        out: dict = {"n_samples": self.n_samples, "threshold": threshold, "skipped": dict(self.skipped)}
        for (mode, level, name), row in self.summary(threshold=threshold).iterrows():
            values = {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}
            out.setdefault(mode, {}).setdefault(level, {})[name] = values
        return out


def compare_checks(checks: Mapping[str, PosteriorPredictiveCheck], *, threshold: float = 0.01) -> pd.DataFrame:
    """Side by side summaries of several runs checked on the same cells: columns (run, measure).

    Parameters
    ----------
    checks
        Run name -> check, e.g. {"nb": ..., "poisson": ...}, like scvi-tools' dictionary of models.
    threshold
        p-value threshold of ``flagged``.
    """
    if not checks:
        raise ValueError("compare_checks needs at least one check, as {run name: check}.")
    return pd.concat({name: check.summary(threshold=threshold) for name, check in checks.items()}, axis=1)


@torch.no_grad()
def posterior_predictive_check(
    model: Callable, guide: Callable, data: PerturbationData, cells: np.ndarray, *, n_samples: int = 20,
    modes: Sequence[CheckMode] = MODES, batch_size: int = 256, interval: float = 0.9,
    device: torch.device | str | None = None,
) -> PosteriorPredictiveCheck:
    """Replicate the checked cells R times from the posterior predictive and compare them with the data.

    Parameters
    ----------
    model, guide
        The Pyro model and guide of a fitted run (count likelihood).
    data
        The design holding the checked cells (raw counts).
    cells
        Row positions of the checked cells in ``data``.
    n_samples
        R, replicated data sets (each with its own draw of the global sites); at least 2.
    modes
        ``"in_sample"`` (z_basal from the encoder) and/or ``"generative"`` (z_basal from the prior).
    batch_size
        Cells per minibatch; memory grows with R x batch_size x G.
    interval
        Width of the replicated interval reported per statistic.
    device
        Where the model lives.

    Returns
    -------
    The check; ``summary()`` gives its table of flagged fractions, r2 and coverage.

    Shapes
    ------
    cells : (N,).
    """
    modes = check_arguments(model, n_samples, modes)
    conditions, codes = _condition_codes(data, cells)
    cells = np.asarray(cells)[np.argsort(codes[cells], kind="stable")]  # batches of few conditions
    loader = MinibatchLoader(data, cells, batch_size=batch_size, shuffle=False, device=device)
    streams = {"observed": _Stream(len(conditions), data.n_genes, (), device)}
    streams |= {mode: _Stream(len(conditions), data.n_genes, (n_samples,), device) for mode in modes}
    globals_ = sample_globals(guide, next(iter(loader)), n_samples)
    names = []
    for batch in loader:
        condition = torch.as_tensor(codes[batch["index"].cpu().numpy()], device=batch["x"].device)
        streams["observed"].add(batch["x"], condition)
        for mode in modes:
            streams[mode].add(replicate(model, guide, batch, globals_, mode), condition, observed=batch["x"])
        names.append(data.obs_names[batch["index"].cpu().numpy()])
    units = {"gene": np.asarray(data.var_names), "cell": np.concatenate(names), "conditions": conditions}
    return _assemble(streams, modes, units, _combinations(data.vocabulary, conditions), data.vocabulary.control_label,
                     n_samples=n_samples, interval=interval)


def check_arguments(model: Callable, n_samples: int, modes: Sequence[str] | str) -> tuple[str, ...]:
    """The distinct modes, after checking them, ``n_samples`` and the model's likelihood (ValueError naming the fix)."""
    if isinstance(modes, str):
        modes = (modes,)
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes={list(modes)!r} is not supported; choose one or more of {list(MODES)}.")
    if int(n_samples) != n_samples or n_samples < 2:
        raise ValueError(f"n_samples={n_samples!r}: a posterior predictive check needs at least 2 replicates "
                         "(20 or more for stable p-values).")
    if not model.head.is_count:
        raise ValueError("Posterior predictive checks compare counts (zero fractions, the log2(1 + 1e4 x / l) "
                         "shift); this model has a 'normal' likelihood. Check a count model ('nb' or 'poisson').")
    return tuple(dict.fromkeys(modes))  # distinct, in the given order


def replicate(model: Callable, guide: Callable, batch: Batch, globals_: GlobalDraws, mode: str) -> Tensor:
    """x_rep ~ p(x | z_basal, D, l, globals) for the batch's cells, z_basal as ``mode`` says.

    Shapes: globals_ each (R, T, K); returns (R, B, G).
    """
    z_basal = None
    if mode == "in_sample":
        z_basal = local_posterior(guide, batch, globals_).nodes[Z_BASAL]["value"]  # (R, B, K)
    return sample_x(model, globals_, batch["D"], batch["library"], z_basal)


def _condition_codes(data: PerturbationData, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted condition labels of the checked cells and each data row's code (-1 outside the check)."""
    conditions, inverse = np.unique(data.labels[cells], return_inverse=True)
    codes = np.full(data.n_cells, -1, dtype=np.int64)
    codes[cells] = inverse
    return conditions, codes


def _combinations(vocabulary, conditions: np.ndarray) -> list[tuple[int, list[int]]]:
    """(row, member rows) of each checked combination whose members are all checked single conditions."""
    row = {label: i for i, label in enumerate(conditions)}
    out = []
    for i, label in enumerate(conditions):
        members = [vocabulary.canonical((member,)) for member in vocabulary.parse(label)]
        if len(members) > 1 and all(member in row for member in members):
            out.append((i, [row[member] for member in members]))
    return out


class _Stream:
    """Everything a check accumulates over batches for the observed data or one mode's replicates."""

    def __init__(self, n_conditions: int, n_genes: int, batch_shape: tuple, device):
        self.moments = CountMoments(n_conditions, n_genes, batch_shape=batch_shape, device=device)
        self.cells: list[dict[str, Tensor]] = []
        self.covered = {level: 0.0 for level in COVERAGE_LEVELS}
        self.n_entries = 0

    def add(self, x: Tensor, condition: Tensor, *, observed: Tensor | None = None) -> None:
        self.moments.add(x, condition)
        self.cells.append(cell_statistics(x))
        if observed is not None:
            pit = count_pit(observed, x, torch.rand_like(observed))
            for level in COVERAGE_LEVELS:
                self.covered[level] += float(covered(pit, level).sum())
            self.n_entries += observed.numel()

    def statistics(self, control: int | None, combinations) -> dict[tuple[str, str], Tensor]:
        """(level, name) -> values, (*batch_shape, U) or (*batch_shape, C, G)."""
        out = {("gene", k): v for k, v in gene_statistics(self.moments).items()}
        out |= {("dataset", k): v.unsqueeze(-1) for k, v in dataset_statistics(self.moments).items()}
        out |= {("cell", k): torch.cat([c[k] for c in self.cells], -1) for k in self.cells[0]}
        if control is not None:
            by_condition = condition_statistics(self.moments, control)
            out |= {("condition", k): v for k, v in by_condition.items()}
            if combinations:
                out[("interaction", "interaction")] = interactions(by_condition["shift"], combinations)
        return out


def _assemble(streams: dict[str, _Stream], modes: tuple[str, ...], units: dict, combinations, control_label: str,
              *, n_samples: int, interval: float) -> PosteriorPredictiveCheck:
    conditions = units["conditions"]
    control = int(np.flatnonzero(conditions == control_label)[0]) if control_label in conditions else None
    skipped = {}
    if control is None:
        skipped["condition"] = "no control cells among the checked cells: shifts need a control group"
    if not combinations:
        skipped["interaction"] = "no checked combination has all of its members among the checked conditions"
    perturbed = [i for i in range(len(conditions)) if i != control]
    unit_labels = _unit_labels(units, perturbed, combinations)
    observed = streams["observed"].statistics(control, combinations)
    frames = []
    for mode in modes:
        replicated = streams[mode].statistics(control, combinations)
        for (level, name), values in observed.items():
            rows = perturbed if level == "condition" else slice(None)
            obs, rep = values[rows], replicated[(level, name)][:, rows]
            frame = compare(obs.reshape(-1).cpu().numpy(), rep.reshape(n_samples, -1).cpu().numpy(),
                            interval=interval)
            frame.insert(0, "unit", unit_labels[level][1])
            frame.insert(0, "condition", unit_labels[level][0])
            frames.append(frame.assign(mode=mode, level=level, statistic=name))
    table = pd.concat(frames, ignore_index=True)
    table = table[[*INDEX, "condition", "unit", *COMPARISON_COLUMNS]]
    table = table.astype({column: "category" for column in (*INDEX, "condition", "unit")})  # ~1e6 rows: compact
    coverage = pd.DataFrame({level: [streams[m].covered[level] / streams[m].n_entries for m in modes]
                             for level in COVERAGE_LEVELS}, index=pd.Index(modes, name="mode"))
    coverage.attrs["n_entries"] = streams[modes[0]].n_entries
    return PosteriorPredictiveCheck(table=table, coverage=coverage, n_samples=n_samples, skipped=skipped)


def _unit_labels(units: dict, perturbed: list[int], combinations) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(condition, unit) labels of the flattened values of each level."""
    genes, conditions = units["gene"], units["conditions"]
    combos = [conditions[row] for row, _ in combinations]
    empty = np.array([], dtype=object)

    def grid(labels) -> tuple[np.ndarray, np.ndarray]:
        return np.repeat(np.asarray(labels, dtype=object), len(genes)), np.tile(genes, len(labels))

    return {"gene": (np.full(len(genes), ""), genes), "cell": (np.full(len(units["cell"]), ""), units["cell"]),
            "dataset": (np.array([""]), np.array(["all"])), "condition": grid(conditions[perturbed]),
            "interaction": grid(combos) if combos else (empty, empty)}
