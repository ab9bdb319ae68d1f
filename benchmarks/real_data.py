"""Real Perturb-seq cells (issue 13): Norman 2019 and Kang 2018 subsets of ``../shared/data``.

Experiments (each row of the output CSV is one model, or baseline, and seed; wall times in seconds):

* ``norman_ood``: the 5 doubles whose singles are measured (KLF1+MAP2K6, MAP2K3+SLC38A2,
  MAP2K3+MAP2K6, MAPK1+TGFBR2, KLF1+TGFBR2) are held out (``held_out_conditions_split``); SAMS-VAE
  (correlated and mean-field guides), CPA-VAE and the conditional VAE against the control-mean,
  training-mean (= Systema's perturbed mean), additive and linear baselines. Scored on the held-out
  doubles: our ATE metrics (Pearson of the flattened ATE, per-condition delta Pearson, top-20 MSE),
  Systema's centred Pearson (``reference`` = the perturbed mean) and cell-eval's metrics (profile
  "minimal"; the model's cells are counterfactual predictions from the control cells, the
  baselines' are mean cells, see ``samsvae_pyro.evaluate.cell_eval``).
* ``norman_random``: random 64/16/20 cell split; held-out IWELBO (test cells, nats per cell) and
  ATE metrics on all conditions for the four families; for the SAMS-VAE rows also the latent
  structure: the posterior effect similarity of the 18 singles scored against a grouping with a
  permutation null (the p38 MAPK activators MAP2K3 and MAP2K6 as one group, every other single its
  own group: the AUROC is the fraction of other pairs less similar than that pair), and the rank of
  KLF1 among the singles by its predicted effect on the erythroid genes HBZ and HBG2.
* ``kang``: the stimulated cells of one cell type (CD4T, the scGen protocol) are held out, all other
  cells 80/20 train / validation. The IFN-beta effect per cell type is predicted by counterfactual
  prediction from that type's control cells (z_basal inferred from them, shifted by the IFNB
  embedding) and compared with the observed effect in that type (stimulated minus control cells,
  "perturbseq" ATE); baseline: the pooled training ATE of IFNB (the same for every type).

Usage (1 thread; each command appends rows to its CSV, ``--skip-done`` resumes)::

    python benchmarks/real_data.py norman_ood --seeds 0 1 2 --steps 1500
    python benchmarks/real_data.py norman_random --seeds 0 1 2 --steps 1500
    python benchmarks/real_data.py kang --seeds 0 1 --steps 600
    python benchmarks/real_data.py norman_ood --seeds 0 --steps 6000 --models sams_vae_correlated \
        --out benchmarks/results/real_norman_ood_long.csv          # does training longer close the gap?
    python benchmarks/real_data.py summary      # mean +- sd tables (Markdown) of every CSV present
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from samsvae_pyro import CPAVAE, SAMSVAE, ConditionalVAE
from samsvae_pyro.data import held_out_conditions_split, random_split
from samsvae_pyro.evaluate import (
    additive_baseline,
    ate_anndata,
    ate_metrics,
    control_mean_baseline,
    data_ate,
    linear_baseline,
    perturbed_mean_baseline,
    perturbed_reference,
    perturbseq_transform,
)
from samsvae_pyro.evaluate.cell_eval import (
    cell_eval_metrics,
    cell_eval_version,
    lognormal_cells,
    mean_cells,
    observed_cells,
    summarise,
)
from samsvae_pyro.interpret import grouping_score, perturbation_similarity

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
NORMAN, KANG = DATA / "norman2019_k562_subset.h5ad", DATA / "kang2018_pbmc_ifnb_subset.h5ad"
RESULTS = Path(__file__).resolve().parent / "results"
CONTROL = "ctrl"
HELD_OUT = ["KLF1+MAP2K6", "MAP2K3+SLC38A2", "MAP2K3+MAP2K6", "MAPK1+TGFBR2", "KLF1+TGFBR2"]
MODELS = {
    "sams_vae_correlated": (SAMSVAE, dict(guide="correlated")),
    "sams_vae_mean_field": (SAMSVAE, dict(guide="mean_field")),
    "cpa_vae": (CPAVAE, {}),
    "conditional_vae": (ConditionalVAE, {}),
}
SIZES = dict(n_latent=10, n_hidden=128)
TRAIN = dict(batch_size=256, lr=3e-3, progress=False)
CELL_EVAL_COLUMNS = ("pearson_delta", "mse", "mae", "discrimination_score_l1", "overlap_at_N", "precision_at_N")
P38 = ["MAP2K3", "MAP2K6"]
ERYTHROID = ["HBZ", "HBG2"]
HELD_OUT_TYPE = "CD4T"


def read(path: Path) -> ad.AnnData:
    if not path.exists():
        raise SystemExit(f"{path} is missing; these experiments need ../shared/data (see its README).")
    return ad.read_h5ad(path)


def setup(adata: ad.AnnData, split: np.ndarray) -> ad.AnnData:
    adata = adata.copy()
    adata.obs["split"] = split
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label=CONTROL, layer="counts",
                          split_key="split")
    return adata


def train(name: str, adata: ad.AnnData, *, steps: int, seed: int):
    cls, options = MODELS[name]
    model = cls(adata, **SIZES, **options, device="cpu", seed=seed)
    start = time.perf_counter()
    model.train(max_steps=steps, seed=seed, val_every=max(steps // 5, 1), **TRAIN)
    return model, time.perf_counter() - start


def scores(pred: ad.AnnData, truth: ad.AnnData, reference: np.ndarray, subset: str) -> dict:
    """Our ATE metrics and Systema's centred Pearson on one condition subset (a split column or 'all')."""
    columns = () if subset == "all" else (f"in_{subset}",)
    plain = ate_metrics(pred, truth, split_columns=columns).loc[subset]
    centred = ate_metrics(pred, truth, split_columns=columns, reference=reference).loc[subset]
    return {"n_conditions": int(plain["n_conditions"]), "ate_r": plain["pearson"], "delta_r": plain["delta_pearson"],
            "top20_mse": plain["mse_top20"], "rank": plain["rank"], "centred_r": centred["pearson"],
            "centred_delta_r": centred["delta_pearson"]}


def baselines(design, truth: ad.AnnData) -> dict[str, ad.AnnData]:
    out = {"control_mean": control_mean_baseline(truth), "perturbed_mean": perturbed_mean_baseline(design, truth),
           "additive": additive_baseline(design, truth)}
    try:
        out["linear"] = linear_baseline(design, truth)
    except ValueError:  # the targets are not among the measured genes: P from the training singles
        out["linear"] = linear_baseline(design, truth, embedding="training")
    return out


def cell_eval_row(real: ad.AnnData, pred: ad.AnnData, subset_conditions: list[str]) -> dict:
    if cell_eval_version() is None:
        return {}
    kept = sorted(set(pred.obs["perturbation"].astype(str)))
    table = cell_eval_metrics(real[real.obs["perturbation"].isin(kept)].copy(), pred, control_label=CONTROL)
    summary = summarise(table, {"subset": subset_conditions})["subset"]
    return {f"ce_{c}": summary.get(c, np.nan) for c in CELL_EVAL_COLUMNS}


def model_cells(model, conditions: list[str], seed: int) -> ad.AnnData:
    """The model's counterfactual cells of every condition and of the control, in cell-eval's layout."""
    cells = model.predict([*conditions, CONTROL], mode="counterfactual", seed=seed)
    return lognormal_cells(cells.layers["counts"], cells.obs["perturbation"], cells.var_names)


def norman_ood(seeds: list[int], steps: int, out: Path, skip: set) -> None:
    raw = read(NORMAN)
    for seed in seeds:
        adata = setup(raw, held_out_conditions_split(raw.obs["perturbation"], HELD_OUT, seed=seed,
                                                     control_label=CONTROL))
        design = SAMSVAE(adata, **SIZES, device="cpu").data  # the registered design, shared by every row
        truth = data_ate(design)
        reference = perturbed_reference(design, truth)
        conditions = list(truth.obs_names)
        real = observed_cells(design, conditions)
        control = real[real.obs["perturbation"] == CONTROL].copy()
        n_cells = truth.obs["n_cells"].to_dict()
        for name, pred in baselines(design, truth).items():
            if (name, seed) in skip:
                continue
            row = {"experiment": "norman_ood", "method": name, "seed": seed, "steps": 0,
                   **scores(pred, truth, reference, "test"), "linear_embedding": pred.uns.get("embedding")}
            row |= cell_eval_row(real, mean_cells(control, pred, n_cells), HELD_OUT)
            append(out, row)
        for name in MODELS:
            if (name, seed) in skip:
                continue
            model, seconds = train(name, adata, steps=steps, seed=seed)
            iwelbo = float(model.iwelbo(split="test", n_particles=50, seed=seed).mean())
            pred = model.model_ate(conditions, n_global_draws=20, samples_per_draw=50, seed=seed)
            row = {"experiment": "norman_ood", "method": name, "seed": seed, "steps": steps, "train_s": seconds,
                   "iwelbo_test": iwelbo, **scores(pred, truth, reference, "test")}
            row |= cell_eval_row(real, model_cells(model, conditions, seed), HELD_OUT)
            append(out, row)


def norman_random(seeds: list[int], steps: int, out: Path, skip: set) -> None:
    raw = read(NORMAN)
    for seed in seeds:
        adata = setup(raw, random_split(raw.n_obs, seed=seed))
        design = SAMSVAE(adata, **SIZES, device="cpu").data
        truth = data_ate(design)
        reference = perturbed_reference(design, truth)
        for name, pred in baselines(design, truth).items():
            if (name, seed) not in skip:
                append(out, {"experiment": "norman_random", "method": name, "seed": seed, "steps": 0,
                             **scores(pred, truth, reference, "all")})
        for name in MODELS:
            if (name, seed) in skip:
                continue
            model, seconds = train(name, adata, steps=steps, seed=seed)
            iwelbo = float(model.iwelbo(split="test", n_particles=50, seed=seed).mean())
            pred = model.model_ate(list(truth.obs_names), n_global_draws=20, samples_per_draw=50, seed=seed)
            row = {"experiment": "norman_random", "method": name, "seed": seed, "steps": steps, "train_s": seconds,
                   "iwelbo_test": iwelbo, **scores(pred, truth, reference, "all")}
            if name.startswith("sams_vae"):
                row |= structure(model, pred, truth, seed)
            append(out, row)


def structure(model, pred: ad.AnnData, truth: ad.AnnData, seed: int) -> dict:
    """Latent structure of the singles vs the p38 grouping (permutation null) and KLF1's erythroid rank."""
    singles = [c for c in truth.obs_names if "+" not in c]
    effects, _ = model.posterior_effects(seed=seed)
    groups = {"p38_activators": P38} | {s: [s] for s in singles if s not in P38}
    row = {}
    data_values = pd.DataFrame(truth[singles].X, index=singles)
    for source, values in (("model", effects.loc[singles]), ("data", data_values)):
        score = grouping_score(perturbation_similarity(values), groups, seed=seed).table.loc["auroc"]
        row |= {f"p38_auroc_{source}": score["observed"], f"p38_p_{source}": score["p_value"]}
    for source, ate in (("model", pred), ("data", truth)):
        erythroid = ate[singles, ERYTHROID].X.sum(axis=1)
        row[f"klf1_erythroid_rank_{source}"] = int((erythroid > erythroid[singles.index("KLF1")]).sum()) + 1
    return row


def kang(seeds: list[int], steps: int, out: Path, skip: set) -> None:
    raw = read(KANG)
    held = ((raw.obs["cell_type"] == HELD_OUT_TYPE) & (raw.obs["perturbation"] != CONTROL)).to_numpy()
    for seed in seeds:
        if ("sams_vae_correlated", seed) in skip:
            continue
        split = random_split(raw.n_obs, fractions=(0.8, 0.2, 0.0), seed=seed).astype(object)
        split[held] = "test"
        adata = setup(raw, split)
        model, seconds = train("sams_vae_correlated", adata, steps=steps, seed=seed)
        design = model.data
        pooled = data_ate(design, cells=design.indices("train")).X[0]  # the baseline: one effect for every type
        types = sorted(raw.obs["cell_type"].unique())
        observed, predicted = [], []
        for cell_type in types:
            in_type = (adata.obs["cell_type"] == cell_type).to_numpy()
            observed.append(data_ate(design, cells=in_type).X[0])
            source = adata[in_type & (adata.obs["perturbation"] == CONTROL).to_numpy()]
            cells = model.predict(["IFNB", CONTROL], mode="counterfactual", source=source, seed=seed)
            values = perturbseq_transform(cells.layers["counts"])
            stim = (cells.obs["perturbation"] == "IFNB").to_numpy()
            predicted.append(values[stim].mean(axis=0) - values[~stim].mean(axis=0))
        truth = ate_anndata(np.stack(observed), types, design.var_names)
        for method, values in (("sams_vae_correlated", np.stack(predicted)), ("pooled_ate", np.tile(pooled, (len(types), 1)))):
            per_type = ate_metrics(ate_anndata(values, types, design.var_names), truth, split_columns=())
            table = pd.Series({t: r for t, r in zip(types, _row_pearson(values, truth.X))})
            append(out, {"experiment": "kang", "method": method, "seed": seed, "steps": steps if method != "pooled_ate" else 0,
                         "train_s": seconds if method != "pooled_ate" else np.nan, "ate_r": per_type.loc["all", "pearson"],
                         "delta_r": per_type.loc["all", "delta_pearson"], "top20_mse": per_type.loc["all", "mse_top20"],
                         f"delta_r_{HELD_OUT_TYPE}_held_out": table[HELD_OUT_TYPE],
                         **{f"delta_r_{t}": v for t, v in table.items() if t != HELD_OUT_TYPE}})


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a**2).sum(1) * (b**2).sum(1))


def append(path: Path, row: dict) -> None:
    frame = pd.DataFrame([row])
    print(frame.to_string(index=False), flush=True)
    if path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    frame.to_csv(path, index=False)


def summary() -> None:
    """Markdown tables, mean ± sd over seeds per method, of every results CSV present."""
    for path in sorted(RESULTS.glob("real_*.csv")):
        frame = pd.read_csv(path)
        numeric = [c for c in frame.select_dtypes("number").columns if c not in ("seed", "steps")]
        grouped = frame.groupby("method", sort=False)
        mean, sd, n = grouped[numeric].mean(), grouped[numeric].std(), grouped.size()
        columns = [c for c in numeric if mean[c].notna().any()]
        print(f"\n## {path.stem}\n\n| method | seeds | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 2))
        for method in mean.index:
            cells = [_mean_sd(mean.at[method, c], sd.at[method, c], c) for c in columns]
            print(f"| {method} | {n[method]} | " + " | ".join(cells) + " |")


def _mean_sd(mean: float, sd: float, column: str) -> str:
    if np.isnan(mean):
        return "–"
    digits = 0 if column.endswith("_s") or "rank_" in column else 3 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f}" + ("" if np.isnan(sd) else f" ± {sd:.{digits}f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=("norman_ood", "norman_random", "kang", "summary"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=None, help="CSV (default benchmarks/results/real_<experiment>.csv)")
    parser.add_argument("--skip-done", action="store_true", help="skip (method, seed) rows already in the CSV")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None,
                        help="train only these models (baselines are still scored)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.experiment == "summary":
        return summary()
    out = args.out or RESULTS / f"real_{args.experiment}.csv"
    done = pd.read_csv(out) if args.skip_done and out.exists() else pd.DataFrame(columns=["method", "seed"])
    skip = set(zip(done["method"], done["seed"]))
    for name in set(MODELS) - set(args.models or MODELS):
        del MODELS[name]
    {"norman_ood": norman_ood, "norman_random": norman_random, "kang": kang}[args.experiment](
        args.seeds, args.steps, out, skip)


if __name__ == "__main__":
    main()
