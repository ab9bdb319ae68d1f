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


def _glossary(report: Mapping[str, Any]) -> list[str]:
    """The terms of the report in a few lines, for a reader who is not a machine-learning specialist."""
    settings = report["settings"]
    unit = ("log2 fold change of expression normalised to 10,000 counts per cell, perturbed cells vs control cells"
            if settings.get("ate_method", "perturbseq") == "perturbseq"
            else "difference of the mean values, perturbed cells vs control cells")
    k = settings.get("top_k", 20)
    lines = ["## How to read this report", "",
            f"- **ATE** (average treatment effect) of a condition, per gene: {unit}. The *data* ATE is measured on "
            "the cells; the *model* ATE is predicted from cells the model generates.",
            "- **ATE r**: Pearson correlation between predicted and observed ATEs over all (condition, gene) pairs "
            f"(1 is perfect, 0 no relation); *top-{k}*: only each condition's {k} most changed genes.",
            "- **delta r**: the same correlation across genes within one condition, averaged over conditions; "
            "**rank**: how often another condition's observed change is closer to a prediction than its own "
            "(0 is perfect, 0.5 is chance).",
            "- **IWELBO** (importance-weighted evidence lower bound): how probable the model finds held-out cells, "
            "in nats per cell; higher is better, and only differences between models on the same cells mean "
            "something (1 nat = e times more probable).",
            "- **Baselines**: *control mean* predicts no change; *training mean* gives every condition the average "
            "change of the training conditions; *additive* sums a combination's single effects; *linear* is a ridge "
            "regression on gene embeddings. A useful model beats them."]
    if "skipped" not in report.get("truth", {"skipped": ""}):
        lines.append("- **mask F1 / AUROC** (simulations): agreement of the inferred sparse mask with the true one "
                     "(1 is perfect; AUROC 0.5 is chance); **coverage**: fraction of true effects inside the 90% "
                     "credible intervals.")
    return lines + ["", "Definitions in full: docs/model.md, section 5."]


def _warning_lines(report: Mapping[str, Any]) -> list[str]:
    warnings = report.get("warnings") or []
    return ["## Warnings", ""] + [f"- **{text}**" for text in warnings] + [""] if warnings else []


def _held_out_lines(report: Mapping[str, Any]) -> list[str]:
    ate = report["ate"]
    if "skipped" in ate:
        return []
    unseen = ate["subsets"].get("unseen", {}).get("conditions")
    if unseen:
        return [f"Held out of training ({_count(len(unseen), 'condition')}, scored in the \"unseen\" columns): "
                + ", ".join(unseen) + ".", ""]
    return ["No condition was held out of training: the held-out (test) cells belong to conditions the model "
            "saw in training, so these scores measure fit to new cells, not prediction of new conditions.", ""]


def _top_gene_lines(report: Mapping[str, Any]) -> list[str]:
    rows = report.get("top_genes")
    if not rows or "skipped" in rows:
        return []
    lines = ["## Top responding genes", "", "Each condition's most changed genes: observed ATE (predicted ATE). "
             "Held-out conditions first.", "", "| condition | genes |", "|---|---|"]
    for row in rows:
        genes = ", ".join(f"{gene} {format_number(observed, 2)} ({format_number(predicted, 2)})"
                          for gene, observed, predicted in zip(row["genes"], row["observed"], row["predicted"]))
        lines.append(f"| {row['condition']}{' (held out)' if row['held_out'] else ''} | {genes} |")
    return lines


def markdown_report(report: Mapping[str, Any]) -> str:
    """The Markdown page of a report dict (as returned by :func:`~samsvae_pyro.runs.evaluate_run`)."""
    model, settings = report["model"], report["settings"]
    lines = [f"# Evaluation of {model['class']} ({model['guide']} guide)", ""] + _warning_lines(report) + [
             f"{model['n_cells']} cells x {model['n_genes']} genes, {model['n_perturbations']} perturbations; "
             f"trained steps: {model['trained_steps'] if model['trained_steps'] is not None else 'unknown'}. "
             f"IWELBO with {settings['n_particles']} particles; model ATE from {settings['ate_draws']} x "
             f"{settings['ate_samples_per_draw']} posterior-predictive samples ({settings['ate_method']} method); "
             f"ATE scored against the data ATE on all cells.", ""]
    lines += _held_out_lines(report) + _glossary(report) + [""]
    lines += _summary_table(report) + [""] + _centred_table(report) + _cell_eval_tables(report)
    lines += _model_detail(report) + [""] + _top_gene_lines(report) + [""]
    lines += _truth_lines(report) + _calibration_lines(report)
    skipped = list(_skipped(report))
    if skipped:
        lines += ["", "## Not evaluated", ""] + [f"- {where}: {reason}" for where, reason in skipped]
    return "\n".join(lines) + "\n"


def _calibration_lines(report: Mapping[str, Any]) -> list[str]:
    """Issue 14's check: coverage of the ATE intervals at each level, with the slopes next to Pearson r."""
    section = report.get("calibration")
    if not section or "skipped" in section:
        return []
    kinds = (("predictive", f"(b) posterior-predictive intervals vs the {section['split']} cells' data ATE"),
             ("population", "(a) population intervals vs the true ATE"))
    lines = ["", "## Calibration of the ATE intervals", "",
             "Observed coverage at each nominal level (ideal: equal). Slope: model on reference (below 1: shrunk, "
             "or a noisy reference); calibration slope: reference on model (1: effects at their observed size, "
             "above 1: shrunk). Plot: `calibration.png`; per condition: `calibration_per_condition.csv`.", "",
             "| intervals | " + " | ".join(f"{float(level):.0%}" for level in section["predictive"]["coverage"])
             + " | Pearson r | slope | calibration slope |", "|---" * 8 + "|"]
    for kind, label in kinds:
        if kind in section:
            scores = section[kind]
            lines.append(f"| {label} | " + " | ".join(format_number(v) for v in scores["coverage"].values())
                         + f" | {format_number(scores['pearson'])} | {format_number(scores['slope'])} | "
                         f"{format_number(scores['calibration_slope'])} |")
    return lines


def _table_subsets(ate: Mapping[str, Any]) -> list[str]:
    """"all" and every non-empty subset whose conditions differ from every earlier one's (identical subsets
    would only repeat the same scores)."""
    return [name for name, info in ate.get("subsets", {}).items()
            if name == "all" or (info["n_conditions"] > 0 and not info["same_as_all"] and not info.get("same_as"))]


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
        same = [f"{name} (the same conditions as {info.get('same_as') or 'all'})"
                for name, info in ate["subsets"].items() if name != "all" and name not in subsets
                and info["n_conditions"]]
        lines += ["", "Condition subsets: " + "; ".join(
            f"{name} = {info['n_conditions']} ({info['description']})" for name, info in ate["subsets"].items())
            + (f". Not repeated: {', '.join(same)}" if same else "")
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
    shown = _table_subsets(report["ate"])
    for subset, row in scores.items():
        if subset not in shown:
            continue
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
                scores = {name.replace("_", " "): ate[name][subset]["pearson"] for name in ate
                          if name != "subsets" and "skipped" not in ate[name]
                          and ate[name][subset]["pearson"] is not None}  # the control mean's r is undefined
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
    return lines + [f"warning: {text}" for text in report.get("warnings") or []]


def interpretation_summary(report: Mapping[str, Any], out: Path) -> list[str]:
    """Lines saying what an interpretation wrote, and its grouping scores against the permutation null."""
    lines = [f"wrote interpret.json and {len(report['files'])} tables and plots to {out}; "
             f"{_count(report['n_clusters_found'], 'cluster')} of {_count(report['n_perturbations'], 'perturbation')}"]
    grouping = report["grouping"]
    if "skipped" not in grouping:
        for name in ("auroc", "ari"):
            row = grouping[name]
            lines.append(f"grouping {name.upper()} {_number(row['observed'])} vs permutation null "
                         f"{_number(row['null_mean'])} +- {_number(row['null_sd'])} (z {_number(row['z_score'])}, "
                         f"p {row['p_value']:.3g}; {grouping['n_grouped']} perturbations in {grouping['n_groups']} "
                         "groups)")
    return lines


def _count(n: int, noun: str) -> str:
    """"1 cluster", "3 clusters"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- posterior predictive checks (ppc.json)

CHECK_HEADING = "## Posterior predictive checks"
_CHECK_MEASURES = {"flagged": "fraction of units with predictive p < {threshold}",
                   "r2": "squared correlation of observed vs replicated values across units",
                   "median_z": "median signed discrepancy (observed - replicated mean) / replicated sd"}


def check_frame(report: Mapping[str, Any], measure: str) -> pd.DataFrame:
    """One measure of every (mode, level, statistic) of a check report, runs as columns."""
    rows: dict[str, dict[str, Any]] = {}
    for run, check in report["runs"].items():
        for mode in report["settings"]["modes"]:
            for level, statistics in check[mode].items():
                for name, values in statistics.items():
                    if level != "count":
                        rows.setdefault(f"{mode} / {level} / {name}", {})[run] = values[measure]
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("mode / level / statistic")


def _coverage_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    rows = {f"{mode} / {run}": {f"{level}%": check[mode]["count"]["interval"][f"coverage_{level}"] for level in (50, 90)}
            for run, check in report["runs"].items() for mode in report["settings"]["modes"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("mode / run")


def _check_settings(report: Mapping[str, Any]) -> str:
    settings = report["settings"]
    return (f"{settings['n_samples']} replicated data sets of {settings['n_cells']} {settings['split'] or 'all'} "
            f"cells; modes: {', '.join(settings['modes'])} (in_sample: z_basal from the encoder; generative: from "
            "the prior).")


def check_markdown(report: Mapping[str, Any]) -> str:
    """``ppc_summary.md``: the settings, one table per measure (runs side by side), the count interval coverage."""
    threshold = report["settings"]["threshold"]
    lines = [f"# Posterior predictive checks of {', '.join(report['runs'])}", "", _check_settings(report), ""]
    for measure, description in _CHECK_MEASURES.items():
        lines += [f"## {measure}: {description.format(threshold=threshold)}", "",
                  markdown_table(check_frame(report, measure)), ""]
    lines += ["## Coverage of each count by its central 50% / 90% predictive interval", "",
              markdown_table(_coverage_frame(report)), ""]
    skipped = {f"{run}: {what}": reason for run, check in report["runs"].items()
               for what, reason in check["skipped"].items()}
    if skipped:
        lines += ["## Not checked", ""] + [f"- {where}: {reason}" for where, reason in skipped.items()] + [""]
    files = report["files"]
    lines += ["Every unit: " + files["table"] + "; figures: " + ", ".join(f"[{f}]({f})" for f in files["figures"])]
    return "\n".join(lines) + "\n"


def with_check_section(text: str, report: Mapping[str, Any]) -> str:
    """``metrics.md`` text ending with the check report's section (replacing an earlier one)."""
    text = text.split("\n" + CHECK_HEADING + "\n")[0].rstrip("\n")
    threshold = report["settings"]["threshold"]
    lines = ["", "", CHECK_HEADING, "", _check_settings(report) + f" Fraction of units with predictive p < "
             f"{threshold} (about {threshold} for a calibrated model; fewer in-sample):", "",
             markdown_table(check_frame(report, "flagged")),
             f"Details: [{report['files']['summary']}]({report['files']['summary']}); figures: "
             + ", ".join(f"[{f}]({f})" for f in report["files"]["figures"]) + "."]
    return text + "\n".join(lines) + "\n"


def check_summary(report: Mapping[str, Any], out: Path) -> list[str]:
    """Lines saying where a check report is, and each run's headline numbers."""
    lines = [f"report: {out / report['files']['summary']} (also ppc.json, {report['files']['table']}, "
             f"{len(report['files']['figures'])} figures)", _check_settings(report)]
    headline = [("gene", "variance"), ("gene", "zero_fraction"), ("gene", "mean"), ("condition", "shift")]
    for run, check in report["runs"].items():
        for mode in report["settings"]["modes"]:
            parts = [f"{level} {name} {format_number(check[mode][level][name]['flagged'], 2)}"
                     for level, name in headline if name in check[mode].get(level, {})]
            coverage = check[mode]["count"]["interval"]["coverage_90"]
            lines.append(f"{run} ({mode}): flagged {', '.join(parts)}; 90% count coverage {format_number(coverage, 2)}")
    return lines
