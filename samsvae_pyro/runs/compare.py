"""The paper-style comparison table of run directories (issue 5, item 3).

One row per run: held-out IWELBO (nats per cell), the IWELBO relative to a reference run (run minus
reference, on the same held-out cells, as the paper reports it: positive is better than the reference),
the ATE Pearson on all genes and on each condition's top-20 genes for every condition subset (all,
train, val, test, unseen), and the mask F1 where simulation truth exists. Written as Markdown and CSV.

A run directory is anything with a ``metrics.json`` written by :func:`~samsvae_pyro.runs.evaluate_run`
(``samsvae train``, ``samsvae demo``, ``samsvae train --config``, ``samsvae sweep``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from samsvae_pyro.files import write_text
from samsvae_pyro.runs.layout import IWELBO_CELLS, read_metrics, write_csv
from samsvae_pyro.runs.render import markdown_table

SUBSETS = ("all", "train", "val", "test", "unseen")
IWELBO, RELATIVE, MASK_F1 = "IWELBO", "relative IWELBO", "mask F1"
SCORE_DIGITS = {IWELBO: 2, RELATIVE: 2}  # decimals of the IWELBO columns; other numbers get 3


def run_scores(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The table's numbers of one run: IWELBO, ATE Pearson (all / top-k genes) per subset, mask F1.

    Subsets a run does not have, and anything skipped, are left out (shown as "–").
    """
    row: dict[str, float | None] = {}
    iwelbo = metrics.get("iwelbo", {})
    if "skipped" not in iwelbo:
        row[IWELBO] = iwelbo["mean"]
    ate, k = metrics.get("ate", {}), metrics.get("settings", {}).get("top_k", 20)
    model = ate.get("model", {}) if "skipped" not in ate else {}
    for subset in SUBSETS:
        if subset in model and "skipped" not in model:
            row[f"ATE r {subset}"] = model[subset]["pearson"]
            row[f"ATE r top-{k} {subset}"] = model[subset][f"pearson_top{k}"]
    mask = metrics.get("truth", {}).get("mask_recovery", {})
    if mask and "skipped" not in mask:
        row[MASK_F1] = mask["f1"]
    return row


def relative_iwelbo(run_dir: str | Path, reference_dir: str | Path) -> float:
    """Mean held-out IWELBO of a run minus that of a reference run, over the same cells (nats per cell)."""
    run, reference = _iwelbo_cells(run_dir), _iwelbo_cells(reference_dir)
    if not run.index.equals(reference.index):
        if set(run.index) != set(reference.index):
            raise ValueError(f"{run_dir} and the reference {reference_dir} evaluated the IWELBO on different cells; "
                             "compare runs of the same split (same data, split kind and split seed).")
        reference = reference.loc[run.index]
    return float((run - reference).mean())


def _iwelbo_cells(run_dir: str | Path) -> pd.Series:
    path = Path(run_dir) / IWELBO_CELLS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {IWELBO_CELLS} (its IWELBO was skipped), so no relative IWELBO.")
    return pd.read_csv(path, index_col=0)["iwelbo"]


def run_label(run_dir: str | Path, metrics: Mapping[str, Any]) -> str:
    """``Class (guide)`` of the evaluated model."""
    model = metrics.get("model", {})
    return f"{model.get('class', '?')} ({model.get('guide', '?')})"


def comparison_table(run_dirs: Sequence[str | Path], *, reference: str | Path | None = None) -> pd.DataFrame:
    """One row per run directory (index: the directory name), columns as in the module docstring.

    ``reference`` (default: the first run) is the run the relative IWELBO is taken against.
    """
    if not run_dirs:
        raise ValueError("no run directories given; pass one or more directories with a metrics.json.")
    reference = Path(reference if reference is not None else run_dirs[0])
    rows = {}
    for run_dir in map(Path, run_dirs):
        metrics = read_metrics(run_dir)
        scores = run_scores(metrics)
        if IWELBO in scores:
            scores = {IWELBO: scores[IWELBO], RELATIVE: relative_iwelbo(run_dir, reference), **scores}
        rows[_unique(run_dir.name or str(run_dir), rows)] = {"model": run_label(run_dir, metrics), **scores}
    return order_columns(pd.DataFrame.from_dict(rows, orient="index").rename_axis("run"))


def _unique(name: str, taken: Mapping) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} ({n})"
    return candidate


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Labels first, then IWELBO, relative IWELBO, ATE r per subset (all genes, then top-k), mask F1."""
    def rank(column: str) -> tuple:
        for position, subset in enumerate(SUBSETS):
            if column.startswith("ATE r") and column.endswith(f" {subset}"):
                return (2, position, "top-" in column)
        return {IWELBO: (1, 0, False), RELATIVE: (1, 1, False), MASK_F1: (3, 0, False)}.get(column, (0, 0, False))

    return frame[sorted(frame.columns, key=rank)]


def comparison_markdown(frame: pd.DataFrame) -> str:
    """The Markdown table of a comparison or runs table: IWELBO columns with 2 decimals, other numbers with 3."""
    return markdown_table(frame, SCORE_DIGITS)


def write_table(frame: pd.DataFrame, out: str | Path, *, markdown: str | None = None) -> tuple[Path, Path]:
    """Write ``out`` with suffix .md (the Markdown table) and .csv (the numbers); returns both paths."""
    out = Path(out)
    if out.suffix not in (".md", ".csv", ""):
        raise ValueError(f"{out}: give a file name ending in .md or .csv (both are written).")
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv = out.with_suffix(".md"), out.with_suffix(".csv")
    write_text(md, markdown if markdown is not None else comparison_markdown(frame))
    write_csv(frame, csv)
    return md, csv
