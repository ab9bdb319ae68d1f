"""The evaluation report of a trained model (issue "Evaluation", item 7; docs/model.md, sections 5 and 8).

:func:`evaluate_run` runs every evaluation that applies to a trained model and writes it to one
directory:

- ``metrics.json``: every scalar, nested by section (settings, iwelbo, ate, per_condition, truth, plots);
- ``metrics.md``: a Markdown table (model and baselines x IWELBO, ATE Pearson per condition subset,
  delta Pearson, rank, mask F1/AUROC and interval coverage) followed by the model's full ATE metrics;
- ``iwelbo_per_cell.csv``, ``per_condition_metrics.csv``;
- ``ate_model.h5ad`` (posterior mean ATE, 90% credible bounds in layers "lower"/"upper") and
  ``ate_data.h5ad`` (the data ATE);
- PNG plots: ``ate_scatter.png``, ``per_condition_metrics.png``, ``mask_heatmap.png``, ``training_curves.png``;
- the calibration check (issue 14): ``calibration_per_condition.csv`` and ``calibration.png`` (nominal vs
  observed coverage of held-out cells' data ATE by posterior-predictive intervals, and of the true ATE by the
  population intervals on simulations), with coverage, Pearson r, slope and calibration slope in
  ``metrics.json`` under "calibration".

Where an evaluation does not apply (no held-out cells, no control cells, no simulation truth, a
baseline that cannot be fitted, a model without a mask: CPA-VAE, conditional VAE), its entry says
so (``{"skipped": reason}`` in the JSON, a line under "Not evaluated" in the Markdown) instead of
failing.

Choices beyond the issue text:

- The data ATE uses every cell (docs/model.md, section 5); conditions are scored per subset: all, those with
  cells in each split (train / val / test), and "unseen", the conditions without training cells
  (e.g. held-out combinations), when there are any.
- Count models use the "perturbseq" ATE; a "normal"-likelihood model (continuous data) uses the
  "mean" ATE, since log2(1 + 1e4 x / sum x) is meaningless for values that can be negative.
- With simulation truth that holds the true ATE, the model's and the data's ATEs are also scored
  against it ("truth" section); the data ATE's score is the ceiling set by sampling noise.
- The model object does not keep its AnnData, so the simulation truth (``adata.uns["sams_truth"]``)
  is passed in as ``truth``.
- Under the "unique" encoding, a condition without training cells exists only with
  ``setup_anndata(..., vocabulary="all")`` (otherwise setup refuses it); its column was fitted to
  the prior only. It is scored like any other, and the description of the "unseen" subset says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from samsvae_pyro.api import PerturbationModel
from samsvae_pyro.data.transforms import ate_method
from samsvae_pyro.evaluate.ate import SPLIT_COLUMNS, ate_anndata, data_ate
from samsvae_pyro.evaluate.baselines import (
    additive_baseline,
    control_mean_baseline,
    linear_baseline,
    perturbed_reference,
    training_mean_baseline,
)
from samsvae_pyro.evaluate.cell_eval import (
    DEFAULT_PROFILE,
    INSTALL_HINT,
    cell_eval_metrics,
    cell_eval_version,
    lognormal_cells,
    mean_cells,
    observed_cells,
    summarise,
)
from samsvae_pyro.evaluate.mask_metrics import mask_recovery
from samsvae_pyro.evaluate.metrics import ate_metrics, interval_coverage, per_condition_metrics
from samsvae_pyro.evaluate.plots import (
    ATE_UNIT,
    plot_ate_scatter,
    plot_calibration,
    plot_mask_heatmap,
    plot_metric_distribution,
    plot_training_curves,
)
from samsvae_pyro.device import torch_threads
from samsvae_pyro.files import write_text
from samsvae_pyro.runs.findings import TOP_GENES, report_warnings, top_genes_table, top_responding_genes
from samsvae_pyro.runs.layout import (
    ATE_DATA,
    ATE_MODEL,
    IWELBO_CELLS,
    METRICS,
    METRICS_MD,
    PER_CONDITION,
    write_csv,
    write_h5ad,
    write_json,
)
from samsvae_pyro.runs.criticism import link_check_section
from samsvae_pyro.runs.render import jsonable, markdown_report

INTERVAL = 0.9
CALIBRATION_CSV, CALIBRATION_PLOT = "calibration_per_condition.csv", "calibration.png"
UNSEEN = "in_unseen"  # extra subset column: conditions without training cells
BASELINES = ("control_mean", "training_mean", "additive", "linear")
_SCALARS = ("precision", "recall", "f1", "auroc", "fraction_on", "fraction_true", "true_positives")


def evaluate_run(
    model: PerturbationModel,
    output_dir: str | os.PathLike,
    *,
    truth: Mapping[str, Any] | None = None,
    n_particles: int = 100,
    ate_draws: int = 50,
    ate_samples_per_draw: int = 50,
    top_k: int = 20,
    plots: bool = True,
    cell_eval: bool = False,
    cell_eval_profile: str = DEFAULT_PROFILE,
    seed: int = 0,
) -> dict:
    """Evaluate a trained model and write the report files to ``output_dir``.

    Parameters
    ----------
    model
        A trained :class:`~samsvae_pyro.api.base.PerturbationModel` (e.g. ``SAMSVAE``).
    output_dir
        Directory of the report (created if needed; files of the same name are replaced).
    truth
        Simulation truth, ``adata.uns["sams_truth"]`` of :func:`~samsvae_pyro.data.simulate_counts` or
        :func:`~samsvae_pyro.data.simulate_paper`: "mask" and "perturbations" give mask recovery, "true_ate"
        and "true_ate_conditions" give interval coverage. ``None`` skips both.
    n_particles
        Particles of the held-out IWELBO (paper: 100).
    ate_draws, ate_samples_per_draw
        Global posterior draws of the model ATE and (z_basal, x) samples per draw (paper: 50 x 50 = 2500).
    top_k
        Genes per condition, largest |data ATE| first, of the "top" metrics.
    plots
        Whether to write the PNG plots.
    cell_eval
        Also score the model and every baseline with Arc Institute's cell-eval (the optional extra
        ``[eval]``): section ``cell_eval`` of the JSON and a table of the Markdown. The model's cells are
        counterfactual predictions from the control cells, the baselines' are mean cells (see
        :mod:`samsvae_pyro.evaluate.cell_eval`). An ImportError says how to install it.
    cell_eval_profile
        cell-eval's metric profile ("minimal" by default).
    seed
        Seed of the IWELBO and model ATE sampling.

    Returns
    -------
    The content of ``metrics.json``: a nested dict of scalars, with ``{"skipped": reason}`` wherever an
    evaluation does not apply.

    Examples
    --------
    >>> from samsvae_pyro import SAMSVAE, simulate_counts
    >>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=30, n_genes=12, n_ate_samples=50)
    >>> SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting",
    ...                       split_key="split")
    >>> model = SAMSVAE(adata, n_latent=3, n_hidden=8, device="cpu")
    >>> _ = model.train(max_steps=2, batch_size=64, progress=False)
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     report = evaluate_run(model, out, truth=adata.uns["sams_truth"], n_particles=4, ate_draws=4,
    ...                           ate_samples_per_draw=4, plots=False)
    >>> sorted(report["ate"])
    ['additive', 'control_mean', 'linear', 'model', 'subsets', 'training_mean']
    """
    if cell_eval and cell_eval_version() is None:
        raise ValueError(INSTALL_HINT)
    with torch_threads(model.threads):
        return _evaluate(model, Path(output_dir), truth=truth, n_particles=n_particles, ate_draws=ate_draws,
                         ate_samples_per_draw=ate_samples_per_draw, top_k=top_k, plots=plots, cell_eval=cell_eval,
                         cell_eval_profile=cell_eval_profile, seed=seed)


def _evaluate(model: PerturbationModel, out: Path, *, truth: Mapping[str, Any] | None, n_particles: int,
              ate_draws: int, ate_samples_per_draw: int, top_k: int, plots: bool, cell_eval: bool,
              cell_eval_profile: str, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    method = ate_method(model.model.head.is_count)
    report: dict[str, Any] = {
        "model": _model_summary(model),
        "settings": {"n_particles": n_particles, "ate_draws": ate_draws, "ate_samples_per_draw": ate_samples_per_draw,
                     "top_k": top_k, "interval": INTERVAL, "ate_method": method, "seed": seed},
        "iwelbo": _iwelbo_section(model, out, n_particles=n_particles, seed=seed),
    }
    ates = _ate_frames(model, out, method=method, draws=ate_draws, samples=ate_samples_per_draw, seed=seed)
    mask = _mask_probabilities(model)
    report["ate"] = _ate_section(model, ates, method=method, top_k=top_k)
    report["ate_centred"] = _centred_section(ates, top_k=top_k)
    report["per_condition"] = _per_condition_section(ates, out, top_k=top_k)
    if cell_eval:
        report["cell_eval"] = _cell_eval_section(model, ates, profile=cell_eval_profile, seed=seed)
    report["truth"] = _truth_section(model, ates, mask, truth, method=method, top_k=top_k)
    report["calibration"] = _calibration_section(model, out, truth, method=method, draws=ate_draws, plots=plots,
                                                 seed=seed)
    report["plots"] = (_plots(model, ates, mask, out, top_k=top_k, method=method) if plots
                       else {"skipped": "plots=False"})
    report["top_genes"] = _top_genes_section(ates, out)
    report = jsonable(report)
    report["warnings"] = report_warnings(report)
    write_json(report, out / METRICS)
    write_text(out / METRICS_MD, markdown_report(report))
    link_check_section(out)  # an earlier `samsvae check` report in the same directory stays linked
    return report


# ---------------------------------------------------------------- sections


def _calibration_section(model: PerturbationModel, out: Path, truth: Mapping[str, Any] | None, *, method: str,
                         draws: int, plots: bool, seed: int) -> dict:
    """Issue 14's check: posterior-predictive coverage of held-out cells' data ATE (per condition, at 50/80/90/95%),
    Pearson r, slope and calibration slope; with a true ATE, the population intervals' coverage of it too."""
    split = next((s for s in ("test", "val") if (np.asarray(model.data.split) == s).any()), None)
    if split is None:
        return {"skipped": "no test or validation cells to check the intervals on"}
    usable = truth is not None and _true_ate_problem(model, {}, truth, method=method) is None
    try:
        scores = model.ate_calibration(split, truth=truth if usable else None, method=method, seed=seed,
                                       n_global_draws=draws, samples_per_draw=200, n_predictive_draws=2 * draws)
    except ValueError as error:  # e.g. no control cells among the held-out cells
        return {"skipped": str(error)}
    section: dict[str, Any] = {"split": split, "file": CALIBRATION_CSV}
    for kind in ("predictive", "population"):
        if kind in scores:
            summary = dict(scores[kind])
            summary["n_conditions"] = len(summary.pop("per_condition"))
            section[kind] = summary
    write_csv(scores["predictive"]["per_condition"], out / CALIBRATION_CSV)
    if plots:
        curves = {f"(b) {split} cells' data ATE, predictive": scores["predictive"]["coverage"]}
        slopes = {name: scores["predictive"]["calibration_slope"] for name in curves}
        if "population" in scores:
            name = "(a) true ATE, population"
            curves[name], slopes[name] = scores["population"]["coverage"], scores["population"]["slope"]
        plot_calibration(curves, out / CALIBRATION_PLOT, slopes=slopes)
        section["plot"] = CALIBRATION_PLOT
    return section


def _model_summary(model: PerturbationModel) -> dict:
    data, history = model.data, getattr(model, "history", None)
    guide = model.guide_spec if isinstance(model.guide_spec, str) else type(model.guide).__name__
    if history is not None and len(history):
        steps = int(history["step"].max())
    else:  # a loaded model keeps its trainer state; one that was never trained has none
        steps = int(model.trainer_state["counters"][0]) if model.trainer_state else 0
    return {"class": type(model).__name__, "guide": guide, "n_cells": data.n_cells, "n_genes": data.n_genes,
            "n_perturbations": data.n_perturbations, "trained_steps": steps}


def _iwelbo_section(model: PerturbationModel, out: Path, *, n_particles: int, seed: int) -> dict:
    """Held-out predictive IWELBO on the test split, else the validation split; per-cell values to CSV."""
    split = next((s for s in ("test", "val") if (np.asarray(model.data.split) == s).any()), None)
    if split is None:
        return {"skipped": "no test or validation cells to evaluate held-out IWELBO on"}
    values = model.iwelbo(split=split, n_particles=n_particles, seed=seed)
    write_csv(values.rename_axis("cell").to_frame(), out / IWELBO_CELLS)
    return {"split": split, "n_cells": len(values), "n_particles": n_particles, "mean": float(values.mean()),
            "sd": float(values.std()), "file": IWELBO_CELLS}


def _ate_frames(model: PerturbationModel, out: Path, *, method: str, draws: int, samples: int, seed: int) -> dict:
    """Data and model ATE AnnData (written to h5ad), or the reason they could not be computed."""
    try:
        data = data_ate(model.data, method=method)
    except ValueError as error:
        return {"skipped": f"no data ATE: {error}"}
    data.obs[UNSEEN] = ~data.obs["in_train"].to_numpy(dtype=bool)
    predicted = model.model_ate(list(data.obs_names), n_global_draws=draws, samples_per_draw=samples,
                                method=method, interval=INTERVAL, seed=seed)
    write_h5ad(data, out / ATE_DATA)
    write_h5ad(predicted, out / ATE_MODEL)
    return {"data": data, "model": predicted, "design": model.data, "method": method}


def _subset_columns(data: AnnData) -> tuple[str, ...]:
    return SPLIT_COLUMNS + ((UNSEEN,) if data.obs[UNSEEN].any() else ())


def _ate_section(model: PerturbationModel, ates: dict, *, method: str, top_k: int) -> dict:
    if "skipped" in ates:
        return {"skipped": ates["skipped"]}
    data = ates["data"]
    columns = _subset_columns(data)
    section = {"subsets": _subsets(data, columns), "model": _scores(ates["model"], data, columns, top_k)}
    if model.data.vocabulary.encoding == "unique" and UNSEEN in columns:
        section["subsets"]["unseen"]["description"] += (" (unique encoding: their columns had no training cells, "
                                                       "so the model predicts them from the prior alone)")
    ates["baselines"] = {}
    for name, predict in _baseline_makers(model.data, data, method).items():
        try:
            ates["baselines"][name] = predict()
            section[name] = _scores(ates["baselines"][name], data, columns, top_k)
        except ValueError as error:  # a baseline that cannot be fitted or predicts nothing here
            section[name] = {"skipped": str(error)}
    linear = ates["baselines"].get("linear")
    if linear is not None:
        section["linear"]["embedding"] = linear.uns["embedding"]
    return section


def _centred_section(ates: dict, *, top_k: int) -> dict:
    """Systema's centred metrics: model and baselines vs data, all centred on the perturbed mean."""
    if "skipped" in ates:
        return {"skipped": ates["skipped"]}
    data = ates["data"]
    try:
        reference = perturbed_reference(ates["design"], data, method=ates["method"])
    except ValueError as error:
        return {"skipped": f"no perturbed mean: {error}"}
    columns = _subset_columns(data)
    section: dict[str, Any] = {"reference": "mean of the training conditions' ATEs (Systema's perturbed mean)"}
    for name, pred in {"model": ates["model"], **ates["baselines"]}.items():
        table = ate_metrics(pred, data, top_k=top_k, split_columns=columns, reference=reference)
        section[name] = {subset: {"pearson": row["pearson"], "delta_pearson": row["delta_pearson"]}
                         for subset, row in table.iterrows()}
    return section


def _cell_eval_section(model: Any, ates: dict, *, profile: str, seed: int) -> dict:
    """cell-eval's metrics, averaged per condition subset, for the model and every baseline."""
    if "skipped" in ates:
        return {"skipped": ates["skipped"]}
    if ates["method"] != "perturbseq":
        return {"skipped": "cell-eval needs counts (log-normalised cells); this model's data are continuous"}
    data, design = ates["data"], model.data
    control_label = design.vocabulary.control_label
    conditions = list(data.obs_names)
    subsets = {"all": conditions} | {column.removeprefix("in_"): list(data.obs_names[data.obs[column].to_numpy(bool)])
                                     for column in _subset_columns(data)}
    real = observed_cells(design, conditions)
    control = real[real.obs["perturbation"] == control_label].copy()
    cells = model.predict([*conditions, control_label], mode="counterfactual", seed=seed)
    predictions = {"model": lognormal_cells(cells.layers["counts"], cells.obs["perturbation"], cells.var_names)}
    n_cells = data.obs["n_cells"].to_dict()
    predictions |= {name: mean_cells(control, pred, n_cells) for name, pred in ates["baselines"].items()}
    section: dict[str, Any] = {"version": cell_eval_version(), "profile": profile}
    for name, pred in predictions.items():
        kept = set(pred.obs["perturbation"].astype(str))
        table = cell_eval_metrics(real[real.obs["perturbation"].isin(kept)].copy(), pred,
                                  control_label=control_label, profile=profile)
        section[name] = summarise(table, subsets) | {"clipped_fraction": pred.uns.get("clipped_fraction", 0.0)}
    return section


def _baseline_makers(design: Any, data: AnnData, method: str) -> dict[str, Callable[[], AnnData]]:
    return {
        "control_mean": lambda: control_mean_baseline(data),
        "training_mean": lambda: training_mean_baseline(design, data, method=method),
        "additive": lambda: additive_baseline(design, data, method=method),
        "linear": lambda: _linear(design, data, method),
    }


def _linear(design: Any, data: AnnData, method: str) -> AnnData:
    """The linear baseline with target-gene embeddings, or with training embeddings where targets are not measured."""
    try:
        return linear_baseline(design, data, method=method)
    except ValueError as targets:
        try:
            return linear_baseline(design, data, method=method, embedding="training")
        except ValueError as training:
            raise ValueError(f"with target-gene embeddings: {targets} With training embeddings: {training}") from None


def _subsets(data: AnnData, columns: tuple[str, ...]) -> dict:
    """Size and meaning of each condition subset; ``same_as_all`` when it holds every condition, ``same_as``
    the first earlier subset with exactly the same conditions (its scores would repeat that one's; never
    for the held-out subset), and for the conditions without training cells their labels."""
    subsets = {"all": {"n_conditions": data.n_obs, "description": "every condition", "same_as_all": True,
                       "same_as": None}}
    seen = {"all": np.ones(data.n_obs, dtype=bool)}
    for column in columns:
        members = data.obs[column].to_numpy(dtype=bool)
        name = column.removeprefix("in_")
        described = ("conditions without training cells" if column == UNSEEN
                     else f"conditions with cells in the {name} split")
        same = None if column == UNSEEN else next(  # the held-out conditions keep their own row
            (earlier for earlier, held in seen.items() if np.array_equal(held, members)), None)
        subsets[name] = {"n_conditions": int(members.sum()), "description": described,
                         "same_as_all": bool(members.all()), "same_as": same if members.any() else None}
        if column == UNSEEN:
            subsets[name]["conditions"] = [str(c) for c in data.obs_names[members]]
        seen[name] = members
    return subsets


def _scores(pred: AnnData, truth: AnnData, columns: tuple[str, ...], top_k: int) -> dict:
    table = ate_metrics(pred, truth, top_k=top_k, split_columns=columns)
    table[["n_conditions", "n_skipped"]] = table[["n_conditions", "n_skipped"]].astype(int)
    return {subset: row.to_dict() for subset, row in table.astype(object).iterrows()}


def _per_condition_section(ates: dict, out: Path, *, top_k: int) -> dict:
    if "skipped" in ates:
        return {"skipped": ates["skipped"]}
    table = per_condition_metrics(ates["model"], ates["data"], top_k=top_k)
    ates["per_condition"] = table
    write_csv(table, out / PER_CONDITION)
    return {"file": PER_CONDITION, "mean": table.mean().to_dict(), "median": table.median().to_dict()}


def _top_genes_section(ates: dict, out: Path, *, shown: int = 20) -> list[dict] | dict:
    """Every condition's top responding genes to ``top_genes.csv``; the first ``shown`` (held-out first) kept."""
    if "skipped" in ates:
        return {"skipped": ates["skipped"]}
    rows = top_responding_genes(ates["data"], ates["model"], n_conditions=None)
    write_csv(top_genes_table(rows).set_index("condition"), out / TOP_GENES)
    return rows[:shown]


def _mask_probabilities(model: PerturbationModel) -> pd.DataFrame | str:
    """q(m = 1) per perturbation and latent dimension, or why there is none (e.g. a family without a mask)."""
    try:
        return model.mask_probabilities()
    except ValueError as error:
        return str(error)


def _truth_section(model: PerturbationModel, ates: dict, mask: pd.DataFrame | str, truth: Mapping[str, Any] | None, *,
                   method: str, top_k: int) -> dict:
    if truth is None:
        return {"skipped": "no simulation truth given (pass truth=adata.uns['sams_truth'] for simulated data)"}
    reason = _true_ate_problem(model, ates, truth, method=method)
    ate = {"coverage": {"skipped": reason}} if reason else _true_ate_section(model, ates, truth, top_k=top_k)
    return {"mask_recovery": _mask_section(model, mask, truth), **ate}


def _mask_section(model: PerturbationModel, estimated: pd.DataFrame | str, truth: Mapping[str, Any]) -> dict:
    if "mask" not in truth or "perturbations" not in truth:
        return {"skipped": "the truth has no 'mask' and 'perturbations'"}
    if isinstance(estimated, str):
        return {"skipped": estimated}
    names = [model.data.vocabulary.canonical(model.data.vocabulary.parse(str(n))) for n in truth["perturbations"]]
    true_mask = pd.DataFrame(np.asarray(truth["mask"]), index=names)
    try:
        scores = mask_recovery(true_mask, estimated)
    except ValueError as error:
        return {"skipped": str(error)}
    return {key: scores[key] for key in _SCALARS} | {"threshold": 0.5}


def _true_ate_section(model: PerturbationModel, ates: dict, truth: Mapping[str, Any], *, top_k: int) -> dict:
    """Coverage of the true ATE by the model's intervals, and model / data ATE scored against it."""
    vocabulary = model.data.vocabulary
    conditions = [vocabulary.canonical(vocabulary.parse(str(c))) for c in truth["true_ate_conditions"]]
    true = ate_anndata(np.asarray(truth["true_ate"]), conditions, model.data.var_names)
    common = [c for c in true.obs_names if c in ates["model"].obs_names]
    if not common:
        return {"coverage": {"skipped": "no condition of the true ATE is among the evaluated conditions"}}
    true, predicted = true[common].copy(), ates["model"][common]
    coverage = interval_coverage(predicted.layers["lower"], predicted.layers["upper"], true.X)
    width = float(np.mean(predicted.layers["upper"] - predicted.layers["lower"]))
    return {
        "coverage": {"interval": INTERVAL, "coverage": coverage, "n_conditions": len(common),
                     "mean_interval_width": width},
        "model_vs_true_ate": ate_metrics(ates["model"], true, top_k=top_k, split_columns=()).loc["all"].to_dict(),
        "data_vs_true_ate": ate_metrics(ates["data"], true, top_k=top_k, split_columns=()).loc["all"].to_dict(),
    }


def _true_ate_problem(model: PerturbationModel, ates: dict, truth: Mapping[str, Any], *, method: str) -> str | None:
    if "true_ate" not in truth or "true_ate_conditions" not in truth:
        return "the truth has no true ATE (only the count simulation stores one)"
    if "skipped" in ates:
        return ates["skipped"]
    if method != "perturbseq" or np.ndim(truth["true_ate"]) != 2:
        return f"the true ATE (perturbseq method) is not comparable with this model's {method!r} ATE"
    if np.shape(truth["true_ate"])[1] != model.data.n_genes:
        return (f"the true ATE has {np.shape(truth['true_ate'])[1]} genes but the model has {model.data.n_genes}; "
                "evaluate on the simulated genes")
    return None


def _plots(model: PerturbationModel, ates: dict, mask: pd.DataFrame | str, out: Path, *, top_k: int,
           method: str) -> dict:
    """Write the PNG plots that apply; each entry is a file name or ``{"skipped": reason}``."""
    unit = ATE_UNIT if method == "perturbseq" else "difference of mean values"
    makers = {
        "ate_scatter": lambda path: plot_ate_scatter(ates["model"], ates["data"], path, top_k=top_k, unit=unit),
        "per_condition_metrics": lambda path: plot_metric_distribution(ates["per_condition"], path),
        "mask_heatmap": lambda path: _plot_mask(mask, path),
        "training_curves": lambda path: _plot_history(getattr(model, "history", None), path),
    }
    written = {}
    for name, make in makers.items():
        if name in ("ate_scatter", "per_condition_metrics") and "skipped" in ates:
            written[name] = {"skipped": ates["skipped"]}
            continue
        try:
            make(out / f"{name}.png")
            written[name] = f"{name}.png"
        except ValueError as error:
            written[name] = {"skipped": str(error)}
    return written


def _plot_mask(mask: pd.DataFrame | str, path: Path) -> Path:
    if isinstance(mask, str):
        raise ValueError(mask)
    return plot_mask_heatmap(mask, path)


def _plot_history(history: pd.DataFrame | None, path: Path) -> Path:
    if history is None or not len(history):
        raise ValueError("no training history (the model was not trained in this session and none was given)")
    return plot_training_curves(history, path)
