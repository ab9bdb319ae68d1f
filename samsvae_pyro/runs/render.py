"""How a run's numbers are shown: JSON values, number formatting, Markdown tables and pages, printed summaries.

The one place where a missing or undefined number becomes "–" and where ``metrics.json`` and
``interpret.json`` are turned into text, for the report files, ``samsvae compare`` / ``sweep`` tables
and the command line's printed summaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MISSING = "–"


def jsonable(value: Any) -> Any:
    """Nested dicts of plain Python scalars; NaN and infinities become None (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def format_number(value: Any, digits: int = 3, *, missing: str = MISSING) -> str:
    """A float with ``digits`` decimals, other values as text; ``missing`` ("–") for None and non-finite floats.

    Examples
    --------
    >>> format_number(0.12345), format_number(None), format_number(float("nan")), format_number(2.0, 1), format_number(3)
    ('0.123', '–', '–', '2.0', '3')
    """
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return missing
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def mean_sd(mean: float, sd: float, digits: int) -> str:
    """``mean ± sd`` (just the mean without a finite sd; "–" without a finite mean)."""
    if not np.isfinite(mean):
        return MISSING
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if np.isfinite(sd) else "")


def markdown_table(frame: pd.DataFrame, digits: Mapping[str, int] | None = None) -> str:
    """A Markdown table of a frame (index included); numbers with ``digits[column]`` decimals (default 3)."""
    digits = digits or {}
    header = [frame.index.name or ""] + list(frame.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in frame.iterrows():
        cells = [format_number(row[c], digits.get(c, 3)) for c in frame.columns]
        lines.append("| " + " | ".join([str(label)] + cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the evaluation report (metrics.md)


def markdown_report(report: Mapping[str, Any]) -> str:
    """The Markdown page of a report dict (as returned by :func:`~samsvae_pyro.runs.evaluate_run`)."""
    model, settings = report["model"], report["settings"]
    lines = [f"# Evaluation of {model['class']} ({model['guide']} guide)", "",
             f"{model['n_cells']} cells x {model['n_genes']} genes, {model['n_perturbations']} perturbations; "
             f"trained steps: {model['trained_steps'] if model['trained_steps'] is not None else 'unknown'}. "
             f"IWELBO with {settings['n_particles']} particles; model ATE from {settings['ate_draws']} x "
             f"{settings['ate_samples_per_draw']} posterior-predictive samples ({settings['ate_method']} method); "
             f"ATE scored against the data ATE on all cells.", ""]
    lines += _summary_table(report) + [""] + _centred_table(report) + _cell_eval_tables(report)
    lines += _model_detail(report) + [""] + _truth_lines(report)
    skipped = list(_skipped(report))
    if skipped:
        lines += ["", "## Not evaluated", ""] + [f"- {where}: {reason}" for where, reason in skipped]
    return "\n".join(lines) + "\n"


def _table_subsets(ate: Mapping[str, Any]) -> list[str]:
    """"all" and every non-empty subset that differs from it (identical columns would only repeat "all")."""
    return [name for name, info in ate.get("subsets", {}).items()
            if name == "all" or (info["n_conditions"] > 0 and not info["same_as_all"])]


def _summary_table(report: Mapping[str, Any]) -> list[str]:
    ate, k = report["ate"], report["settings"]["top_k"]
    subsets = _table_subsets(ate)
    extra = _truth_columns(report)
    header = ["method", "IWELBO (nats/cell)"]
    for subset in subsets:
        header += [f"ATE r {subset}", f"ATE r top-{k} {subset}"]
    header += ["delta r (all)", "rank (all)"] * bool(subsets) + list(extra)
    lines = ["## Summary", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ("model",) + tuple(name for name in ate if name not in ("subsets", "model")):
        scores = ate.get(name, {})
        if name != "model" and (not scores or "skipped" in scores):
            continue
        is_model = name == "model"
        row = [_model_label(report) if is_model else _baseline_label(name, scores)]
        row.append(format_number(report["iwelbo"].get("mean"), 1) if is_model else "–")
        for subset in subsets:
            row += [format_number(scores[subset]["pearson"]), format_number(scores[subset][f"pearson_top{k}"])]
        if subsets:
            row += [format_number(scores["all"]["delta_pearson"]), format_number(scores["all"]["rank"])]
        row += [format_number(value) if is_model else "–" for value in extra.values()]
        lines.append("| " + " | ".join(row) + " |")
    if subsets:
        same = [name for name, info in ate["subsets"].items() if name != "all" and info["same_as_all"]]
        lines += ["", "Condition subsets: " + "; ".join(
            f"{name} = {info['n_conditions']} ({info['description']})" for name, info in ate["subsets"].items())
            + (f". {', '.join(same)} {'holds' if len(same) == 1 else 'hold'} every condition, so "
               f"{'its scores equal' if len(same) == 1 else 'their scores equal'} those of all" if same else "")
            + ". ATE r: Pearson of the flattened (conditions x genes) ATE matrices, model or baseline vs data; "
            "delta r: mean per-condition Pearson across genes; rank: 0 is perfect; –: not applicable, or undefined "
            "(the control mean predicts a constant 0, so its Pearson is undefined)."]
    return lines


def _baseline_label(name: str, scores: Mapping[str, Any]) -> str:
    if name == "linear" and scores.get("embedding") == "training":
        return "linear (training embedding)"
    return name.replace("_", " ")


def _methods(report: Mapping[str, Any], section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, row label) of the model and of every baseline scored in ``section``, in the summary's order."""
    ate = report["ate"]
    names = ("model",) + tuple(name for name in ate if name not in ("subsets", "model"))
    return [(name, _model_label(report) if name == "model" else _baseline_label(name, ate.get(name, {})))
            for name in names if name in section]


def _centred_table(report: Mapping[str, Any]) -> list[str]:
    """Systema's metrics centred on the perturbed mean, model and baselines (section ``ate_centred``)."""
    section = report.get("ate_centred", {})
    if not section or "skipped" in section:
        return []
    subsets = _table_subsets(report["ate"])
    header = ["method"] + [f"{metric} {subset}" for subset in subsets for metric in ("centred r", "centred delta r")]
    lines = ["## Centred on the perturbed mean (Systema)", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for name, label in _methods(report, section):
        row = [label] + [format_number(section[name][subset][metric]) for subset in subsets
                         for metric in ("pearson", "delta_pearson")]
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "Model and baselines vs data after subtracting the mean of the training conditions' ATEs "
                    "from both, so only what is specific to each condition counts. The training mean is Systema's "
                    "perturbed-mean baseline: it is the reference itself, so it scores – (undefined) by construction.", ""]


def _cell_eval_tables(report: Mapping[str, Any]) -> list[str]:
    """cell-eval's metrics per condition subset, model and baselines (section ``cell_eval``)."""
    section = report.get("cell_eval")
    if not section or "skipped" in section:
        return []
    lines = [f"## cell-eval {section['version']} (profile {section['profile']!r})", ""]
    for subset in _table_subsets(report["ate"]):
        metrics = sorted({m for name, _ in _methods(report, section) for m in section[name][subset]} - {"n_conditions"})
        header = ["method", "conditions"] + metrics + ["clipped"]
        lines += [f"Conditions: {subset}.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, label in _methods(report, section):
            scores = section[name][subset]
            cells = [format_number(scores.get(m)) for m in metrics] + [format_number(section[name]["clipped_fraction"])]
            lines.append("| " + " | ".join([label, str(scores["n_conditions"])] + cells) + " |")
        lines.append("")
    return lines + ["cell-eval's own metrics (means over conditions); the model's cells are counterfactual "
                    "predictions from the control cells, the baselines' are mean cells (control mean plus "
                    "the predicted ATE); clipped: fraction of those means below zero, raised to zero (log-normalised "
                    "values cannot be negative), which moves the baseline's cell-eval scores away from ours.", ""]


def _truth_columns(report: Mapping[str, Any]) -> dict[str, float | None]:
    """Summary-table columns that exist only with simulation truth: mask F1 / AUROC, interval coverage."""
    truth = report["truth"]
    if "skipped" in truth:
        return {}
    columns = {}
    if "skipped" not in truth["mask_recovery"]:
        columns |= {"mask F1": truth["mask_recovery"]["f1"], "mask AUROC": truth["mask_recovery"]["auroc"]}
    if "skipped" not in truth["coverage"]:
        columns[f"{int(truth['coverage']['interval'] * 100)}% coverage"] = truth["coverage"]["coverage"]
    return columns


def _model_label(report: Mapping[str, Any]) -> str:
    return f"{report['model']['class']} ({report['model']['guide']})"


def _model_detail(report: Mapping[str, Any]) -> list[str]:
    scores = report["ate"].get("model", {})
    if "skipped" in scores or "skipped" in report["ate"]:
        return []
    columns = list(next(iter(scores.values())))
    lines = ["## Model ATE metrics by condition subset", "", "| subset | " + " | ".join(columns) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for subset, row in scores.items():
        cells = [str(row[c]) if c in ("n_conditions", "n_skipped") else format_number(row[c]) for c in columns]
        lines.append(f"| {subset} | " + " | ".join(cells) + " |")
    return lines


def _truth_lines(report: Mapping[str, Any]) -> list[str]:
    truth = report["truth"]
    if "skipped" in truth:
        return []
    lines = ["## Simulation truth", ""]
    mask = truth["mask_recovery"]
    if "skipped" not in mask:
        lines.append(f"- Mask recovery (q(m) > 0.5, Hungarian-matched latent dims): precision "
                     f"{format_number(mask['precision'])}, recall {format_number(mask['recall'])}, "
                     f"F1 {format_number(mask['f1'])}, AUROC {format_number(mask['auroc'])}.")
    coverage = truth["coverage"]
    if "skipped" not in coverage:
        lines.append(f"- {int(coverage['interval'] * 100)}% credible intervals of the model ATE cover "
                     f"{format_number(coverage['coverage'])} of the true ATE entries ({coverage['n_conditions']} "
                     f"conditions; mean width {format_number(coverage['mean_interval_width'])}).")
        model, data = truth["model_vs_true_ate"], truth["data_vs_true_ate"]
        lines.append(f"- Against the true ATE: model ATE r {format_number(model['pearson'])}, data ATE r "
                     f"{format_number(data['pearson'])} (the data ATE's sampling noise sets this ceiling).")
    return lines


def _skipped(node: Any, where: str = "") -> Any:
    """(section path, reason) of every skipped entry of a report."""
    if isinstance(node, Mapping):
        if "skipped" in node:
            yield where or "report", node["skipped"]
            return
        for key, value in node.items():
            yield from _skipped(value, f"{where}.{key}" if where else str(key))


# ---------------------------------------------------------------- printed summaries (command line)


def _number(value: float | None) -> str:
    return format_number(value, missing="undefined")


def evaluation_summary(report: Mapping[str, Any], out: Path) -> list[str]:
    """Lines saying where an evaluation report is, and its headline numbers."""
    lines = [f"report: {out / 'metrics.md'} (also metrics.json, ate_model.h5ad, ate_data.h5ad, PNG plots)"]
    iwelbo = report["iwelbo"]
    if "skipped" not in iwelbo:
        lines.append(f"held-out IWELBO ({iwelbo['split']} cells, {iwelbo['n_particles']} particles): "
                     f"{iwelbo['mean']:.1f} nats per cell")
    ate = report["ate"]
    if "skipped" not in ate:
        for subset, info in ate["subsets"].items():
            if subset in ("all", "unseen") and info["n_conditions"]:
                scores = {name: ate[name][subset]["pearson"] for name in ate
                          if name != "subsets" and "skipped" not in ate[name]}
                what = "conditions" if subset == "all" else info["description"]
                lines.append(f"ATE Pearson vs data ATE on {subset} ({info['n_conditions']} {what}): "
                             + ", ".join(f"{name} {_number(value)}" for name, value in scores.items()))
    truth = report["truth"]
    if "skipped" not in truth:
        mask, coverage = truth["mask_recovery"], truth["coverage"]
        if "skipped" not in mask:
            lines.append(f"mask recovery: F1 {_number(mask['f1'])}, AUROC {_number(mask['auroc'])}")
        if "skipped" not in coverage:
            lines.append(f"{int(coverage['interval'] * 100)}% credible intervals cover "
                         f"{_number(coverage['coverage'])} of the true ATE entries")
    return lines


def interpretation_summary(report: Mapping[str, Any], out: Path) -> list[str]:
    """Lines saying what an interpretation wrote, and its grouping scores against the permutation null."""
    lines = [f"wrote interpret.json and {len(report['files'])} tables and plots to {out}; "
             f"{report['n_clusters_found']} clusters of {report['n_perturbations']} perturbations"]
    grouping = report["grouping"]
    if "skipped" not in grouping:
        for name in ("auroc", "ari"):
            row = grouping[name]
            lines.append(f"grouping {name.upper()} {_number(row['observed'])} vs permutation null "
                         f"{_number(row['null_mean'])} +- {_number(row['null_sd'])} (z {_number(row['z_score'])}, "
                         f"p {row['p_value']:.3g}; {grouping['n_grouped']} perturbations in {grouping['n_groups']} "
                         "groups)")
    return lines
