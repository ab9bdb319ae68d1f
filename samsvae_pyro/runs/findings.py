"""What a biologist should read first in an evaluation report: warnings and each condition's top genes.

- :func:`report_warnings`: the model trained 0 steps, or its ATE Pearson r is below a simple baseline's
  (training mean, additive, linear) on all conditions or on those held out of training. Such a model
  has not learned perturbation-specific effects better than a rule of thumb; the report and the command
  line say so instead of leaving it to the reader to compare columns.
- :func:`top_responding_genes`: for each condition (held-out ones first), the genes with the largest
  observed change and the model's predicted change for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

COMPARED_BASELINES = ("training_mean", "additive", "linear")  # the control mean's Pearson is undefined
TOP_GENES = "top_genes.csv"  # every condition's top responding genes, written next to metrics.json


def report_warnings(report: Mapping[str, Any]) -> list[str]:
    """Sentences warning about an untrained model or one that scores below a simple baseline."""
    warnings = []
    if report["model"].get("trained_steps") == 0:
        warnings.append("The model was trained for 0 steps: these are the scores of its random initialisation. "
                        "Train it (e.g. `samsvae train --steps 1000`) before reading them.")
    ate = report.get("ate", {})
    if "skipped" in ate or "model" not in ate:
        return warnings
    for subset in ("all", "unseen"):
        if not ate["subsets"].get(subset, {}).get("n_conditions"):
            continue
        model = ate["model"][subset]["pearson"]
        for name in COMPARED_BASELINES:
            scores = ate.get(name, {})
            baseline = None if "skipped" in scores else scores[subset]["pearson"]
            if model is not None and baseline is not None and model < baseline:
                where = "all conditions" if subset == "all" else "the conditions held out of training"
                warnings.append(
                    f"On {where}, the model's ATE r ({model:.3f}) is below the {name.replace('_', ' ')} "
                    f"baseline's ({baseline:.3f}): it has not learned effects better than that rule. Train "
                    "longer (more steps), check that the counts are raw and the control label is right, or "
                    "prefer the baseline for these conditions.")
    return warnings


def top_responding_genes(data: AnnData, model: AnnData, *, n_conditions: int | None = 20,
                         n_genes: int = 5) -> list[dict]:
    """Each condition's ``n_genes`` largest observed changes, with the predicted change of the same genes.

    Conditions without training cells (``data.obs["in_train"]`` False) come first, then the others by
    their largest observed change; at most ``n_conditions`` of them (``None``: all).

    Shapes
    ------
    data, model : (C, G) ATE AnnData with the same genes; returns at most n_conditions entries.
    """
    held_out = ~data.obs["in_train"].to_numpy(bool) if "in_train" in data.obs else np.zeros(data.n_obs, bool)
    strength = np.nanmax(np.abs(data.X), axis=1)
    order = np.lexsort((-strength, ~held_out))[:n_conditions]  # a slice to None keeps all
    rows = model.obs_names.get_indexer(data.obs_names)
    columns = model.var_names.get_indexer(data.var_names)
    out = []
    for i in order:
        genes = np.argsort(-np.abs(data.X[i]), kind="stable")[:n_genes]
        predicted = model.X[rows[i], columns[genes]] if rows[i] >= 0 else np.full(len(genes), np.nan)
        out.append({"condition": str(data.obs_names[i]), "held_out": bool(held_out[i]),
                    "genes": [str(data.var_names[g]) for g in genes],
                    "observed": [float(v) for v in data.X[i, genes]], "predicted": [float(v) for v in predicted]})
    return out


def top_genes_table(rows: list[dict]) -> pd.DataFrame:
    """:func:`top_responding_genes` as a long table: condition, held_out, rank, gene, observed, predicted."""
    return pd.DataFrame([{"condition": row["condition"], "held_out": row["held_out"], "rank": rank + 1, "gene": gene,
                          "observed": observed, "predicted": predicted}
                         for row in rows
                         for rank, (gene, observed, predicted) in enumerate(zip(row["genes"], row["observed"],
                                                                                row["predicted"]))])
