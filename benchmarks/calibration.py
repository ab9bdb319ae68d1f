"""Calibration of treatment effects (issue 14): causes of shrinkage, one at a time, on simulations with known effects.

Each variant changes one thing on top of the demo's recipe (correlated guide, offset-subtracting encoder,
lr 3e-3, 5 particles, 1,500 steps of batch 256, n_latent 8, hidden 128, mask prior 0.1) and is scored by
:func:`samsvae_pyro.evaluate.calibration.ate_calibration`:

- (a) population intervals against the simulator's true ATE: slope of the posterior-mean ATE on the true
  ATE (entries with |true ATE| > 0.5), Pearson r, coverage at 50/80/90/95%;
- (b) posterior-predictive intervals of the test cells' data ATE: slope, r, coverage at 50/80/90/95%;
- held-out (test) IWELBO, the ratio of the learned to the true latent effect norms |E * M|_t (median
  over perturbations: below 1 means the latent effects themselves are shrunk, otherwise the decoder
  or the ATE map shrinks them), and wall time.

A variant may also add a second training stage (``refine``: only q(M) and q(E) trained, the networks frozen,
:func:`refine_globals`) or score an ensemble of K fits from other initial seeds (``ensemble``: their posterior
draws pooled by ``ate_calibration(..., ensemble=...)``); with ``bootstrap`` the further fits train on bootstrap
resamples of the training cells (``train(bootstrap=k)``, a bag as :meth:`SAMSVAE.bagged` fits it).

Simulations: ``counts`` (``simulate_counts`` defaults: 12 perturbations, 60 genes, 200 cells each) and
``demo`` (the demo's: 12 perturbations, 6 pairs of which 2 are held out of training). Effects are about
2.5 basal standard deviations per active latent dimension.

Usage
-----
    python benchmarks/calibration.py --sims demo counts --seeds 0 --variants default paper_encoder ...
    python benchmarks/calibration.py --list
    python benchmarks/calibration.py --diagnose --sims demo --variants default mask_init_3

Rows are appended to ``--out`` (default ``benchmarks/results/calibration.csv``) as they finish;
``--skip-done`` resumes an interrupted grid.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grid import grid_parser, listed, seed_summary

RECIPE = dict(guide="correlated", model={}, guide_kwargs={},
              train=dict(max_steps=1500, batch_size=256, lr=3e-3, n_particles=5, val_every=300), refine={},
              ensemble=1, bootstrap=False)


def _composed(autoguide_name: str):
    def factory(model, **stats):
        from pyro.infer import autoguide

        from samsvae_pyro.guides import ComposedGuide

        return ComposedGuide(model, autoguide=getattr(autoguide, autoguide_name), **stats)

    return factory


# Each variant: one cause of shrinkage probed at a time.
VARIANTS: dict[str, dict] = {
    "default": {},
    # amortised encoder absorbing effects: the paper's parametrisation (encoder sees d (E * M), no subtraction)
    "paper_encoder": dict(guide_kwargs=dict(subtract_offset=False)),
    "x_only_encoder": dict(guide_kwargs=dict(use_offset=False)),
    # the N(0, 1) embedding prior against effects of 2.5-5 sd: a wider fixed prior, or sigma_e learned
    "prior_scale_3": dict(model=dict(embedding_prior_scale=3.0)),
    "learned_prior_scale": dict(model=dict(learn_embedding_prior_scale=True)),
    # under-training: train to a validation criterion instead of a fixed step count
    "converged": dict(train=dict(max_steps=8000, val_every=250, early_stopping_patience=4)),
    "steps_5000_last": dict(train=dict(max_steps=5000, val_every=5000)),  # validated once: the last state is kept
    # under-training of E alone: q(M) and q(E) learn faster than the networks (which overfit past ~1,250 steps)
    "lr_globals_1e-2": dict(train=dict(lr_globals=1e-2)),
    "lr_globals_3e-2": dict(train=dict(lr_globals=3e-2)),
    # over-confidence once shrinkage is reduced: a low-rank Gaussian q(E) with the faster global learning rate
    "lowrank_E_lr_globals_1e-2": dict(guide=_composed("AutoLowRankMultivariateNormal"), train=dict(lr_globals=1e-2)),
    # two stages: the recipe (best-validation checkpoint), then only q(M), q(E) for more steps with the encoder,
    # decoder and dispersion frozen (validation-monitored), so E converges while the networks cannot overfit
    "refine_1500": dict(refine=dict(max_steps=1500)),
    "refine_1500_lr_1e-2": dict(refine=dict(max_steps=1500, lr=1e-2)),
    "lr_globals_1e-2_refine_1500": dict(train=dict(lr_globals=1e-2), refine=dict(max_steps=1500, lr=1e-2)),
    # (a) intervals ignore the uncertainty of the point-estimated networks: pool the posteriors of K fits from
    # different initial seeds (a seed ensemble); IWELBO and the effect norms are the first fit's
    "ensemble_3": dict(ensemble=3),
    "ensemble_3_lr_globals_1e-2": dict(ensemble=3, train=dict(lr_globals=1e-2)),
    # over-confident q(E): mean-field independent Normals; a low-rank Gaussian over E (Pyro autoguide)
    "mean_field": dict(guide="mean_field"),
    "lowrank_E": dict(guide=_composed("AutoLowRankMultivariateNormal")),
    # decoder saturation: a wider decoder
    "decoder_400": dict(model=dict(n_hidden=400)),
    # the mask: uncertain q(m) averages effects with zero; a prior inclusion probability at the truth's (2 / K),
    # and no mask at all (M = 1, the CPA-VAE model)
    "mask_prior_0.25": dict(model=dict(mask_prior_prob=0.25)),
    # q(m) starts at 0.5 (logit 0) and Adam moves a logit by about lr per step: after ~1,250 steps the entries
    # of real effects sit at q(m) 0.85-0.9, so the posterior-mean effect (an average over mask draws) is
    # shrunk by that factor; start the mask on (logit 3, q(m) 0.95) and let the prior switch entries off
    "mask_init_3": dict(guide_kwargs=dict(mask_init_logit=3.0)),
    "mask_init_3_lr_globals_1e-2": dict(guide_kwargs=dict(mask_init_logit=3.0), train=dict(lr_globals=1e-2)),
    "mask_init_5": dict(guide_kwargs=dict(mask_init_logit=5.0)),
    # milder starts (q(m) 0.73, 0.82): is there one that keeps the slope gain and still lets the prior switch
    # entries off (mask_recovery.py init_logit_1, init_logit_1.5)?
    "mask_init_1": dict(guide_kwargs=dict(mask_init_logit=1.0)),
    "mask_init_1.5": dict(guide_kwargs=dict(mask_init_logit=1.5)),
    "mask_init_1_lr_globals_1e-2": dict(guide_kwargs=dict(mask_init_logit=1.0), train=dict(lr_globals=1e-2)),
    "ensemble_3_mask_init_3_lr_globals_1e-2": dict(ensemble=3, guide_kwargs=dict(mask_init_logit=3.0),
                                                   train=dict(lr_globals=1e-2)),
    "ensemble_5_mask_init_3_lr_globals_1e-2": dict(ensemble=5, guide_kwargs=dict(mask_init_logit=3.0),
                                                   train=dict(lr_globals=1e-2)),
    "no_mask": dict(model=dict(mask_prior=None), guide="mean_field"),
    # a decided, sparse mask (issue 11's recipe, train(inference="sparse")): dense start, fast mask logits, the
    # expected number of entries on annealed to the simulations' true density (2 / K); the posterior-mean effect
    # is no longer averaged with zero over undecided mask draws
    "sparse": dict(train=dict(inference=dict(target=0.25))),
    "mf_sparse": dict(guide="mean_field", train=dict(inference=dict(target=0.25))),
    "sparse_freeze": dict(train=dict(inference=dict(target=0.25, freeze=0.8))),
    # (a) intervals from one fit ignore the sampling error of the fitted networks; a seed ensemble adds the
    # spread between optimisation runs only. Bagging: the further fits train on bootstrap resamples of the
    # training cells within each condition (train(bootstrap=k)), so the pooled draws also carry the data's
    # sampling error
    "bagging_5_sparse": dict(ensemble=5, bootstrap=True, train=dict(inference=dict(target=0.25))),
    "bagging_5_sparse_freeze": dict(ensemble=5, bootstrap=True, train=dict(inference=dict(target=0.25, freeze=0.8))),
    "ensemble_5_sparse": dict(ensemble=5, train=dict(inference=dict(target=0.25))),
    "bagging_5": dict(ensemble=5, bootstrap=True),
    "bagging_10_sparse": dict(ensemble=10, bootstrap=True, train=dict(inference=dict(target=0.25))),
    "sparse_3000": dict(train=dict(max_steps=3000, inference=dict(target=0.25))),
    "sparse_paper_encoder": dict(guide_kwargs=dict(subtract_offset=False), train=dict(inference=dict(target=0.25))),
    "bagging_10_sparse_paper_encoder": dict(ensemble=10, bootstrap=True, guide_kwargs=dict(subtract_offset=False),
                                            train=dict(inference=dict(target=0.25))),
    "sparse_prior_scale_3": dict(model=dict(embedding_prior_scale=3.0), train=dict(inference=dict(target=0.25))),
    "sparse_lr_globals_1e-2": dict(train=dict(inference=dict(target=0.25), lr_globals=1e-2)),
    "sparse_freeze_lr_globals_1e-2": dict(train=dict(inference=dict(target=0.25, freeze=0.8), lr_globals=1e-2)),
}

SIMULATIONS = ("counts", "demo")


def simulate(sim: str, seed: int):
    from samsvae_pyro import simulate_counts
    from samsvae_pyro.runs import demo_data

    return simulate_counts(seed=seed) if sim == "counts" else demo_data(seed=seed)[0]


def resolve(variant: str) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in RECIPE.items()}
    for key, value in VARIANTS[variant].items():
        out[key] = {**out[key], **value} if isinstance(value, dict) else value
    return out


def effect_norm_ratio(model, truth) -> float:
    """Median over perturbations of |posterior mean E * M|_t / |true E * M|_t (rotation-invariant norms)."""
    from samsvae_pyro.evaluate.posterior import guide_trace
    from samsvae_pyro.models.plates import E, MASK

    trace = guide_trace(model.guide, model.example_batch(1), 200)
    effect = trace.nodes[E]["value"] * (trace.nodes[MASK]["value"] if MASK in trace.nodes else 1.0)
    learned = effect.mean(0).norm(dim=-1).cpu().numpy()  # (T,)
    order = model.data.vocabulary.perturbations
    true = pd.Series(np.linalg.norm(np.asarray(truth["mask"]) * np.asarray(truth["embedding"]), axis=1),
                     index=list(truth["perturbations"]))[list(order)].to_numpy()
    return float(np.median(learned / true))


def diagnose(sim: str, variant: str, seed: int) -> None:
    """Where the missing part of each effect sits: q(m) of the entries carrying it, and the shift of the mean basal
    state of each perturbation's training cells from the controls', projected on its learned effect (a fraction
    of it; positive: the encoder keeps part of the effect in the cells' basal states)."""
    from samsvae_pyro import SAMSVAE
    from samsvae_pyro.evaluate.posterior import guide_trace
    from samsvae_pyro.models.plates import E, MASK

    adata = simulate(sim, seed)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    model = fit(adata, resolve(variant), seed)[0][0]
    trace = guide_trace(model.guide, model.example_batch(1), 300)
    mask = trace.nodes[MASK]["value"].mean(0).cpu().numpy()  # (T, K)
    effect = (trace.nodes[E]["value"] * trace.nodes[MASK]["value"]).mean(0).cpu().numpy()
    basal = np.asarray(model.get_latent_representation(kind="basal"))
    labels, split = (np.asarray(adata.obs[key]).astype(str) for key in ("perturbation", "split"))
    train = split == "train"
    control = basal[train & (labels == "non-targeting")].mean(0)
    n_true = int(np.asarray(adata.uns["sams_truth"]["mask"]).sum())
    print(f"{sim} {variant} seed {seed}: entries with q(m) > 0.5: {(mask > 0.5).sum()} of {mask.size} "
          f"(true: {n_true}); largest q(m) per perturbation: {np.round(mask.max(1).astype(float), 2).tolist()}")
    for t, name in enumerate(model.data.vocabulary.perturbations):
        shift = basal[train & (labels == name)].mean(0) - control
        print(f"  {name}: |effect| {np.linalg.norm(effect[t]):.2f}, basal shift along it "
              f"{shift @ effect[t] / (effect[t] @ effect[t]):+.3f} of it")


def refine_globals(model, train: dict, refine: dict, seed: int) -> int:
    """Second stage: a fresh optimiser on the guide's global parameters only (q(M), q(E)), everything else frozen,
    starting from the first stage's best-validation state and keeping the best validation state of this stage."""
    chosen = {id(p) for p in model.guide.global_parameters()}
    frozen = [p for p in [*model.model.parameters(), *model.guide.parameters()] if id(p) not in chosen]
    for p in frozen:
        p.requires_grad_(False)
    model.trainer_state = None  # start from the restored best state, not the last step
    try:
        history = model.train(seed=seed + 1, progress=False, **(train | refine))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return int(history["step"].max())


def fit(adata, recipe: dict, seed: int, *, n_latent: int = 8) -> tuple[list, int]:
    """The recipe's ``ensemble`` fits (:meth:`SAMSVAE.bagged`: seeds ``seed + 1000 k``, bootstrap resamples with
    ``bootstrap``), the first refined with ``refine``; returns them and the first fit's total step count."""
    from samsvae_pyro import SAMSVAE

    guide_kwargs = dict(recipe["guide_kwargs"])
    if recipe["guide"] == "correlated":
        guide_kwargs = {"embedding_hidden": 128, **guide_kwargs}
    model_kwargs = dict(n_latent=n_latent, n_hidden=128, mask_prior_prob=0.1) | recipe["model"]
    fits = SAMSVAE.bagged(adata, recipe["ensemble"], seed=seed, bootstrap=recipe["bootstrap"],
                          train=recipe["train"] | {"progress": False}, guide=recipe["guide"],
                          guide_kwargs=guide_kwargs if isinstance(recipe["guide"], str) else None, device="cpu",
                          **model_kwargs)
    steps = int(fits[0].history["step"].max())
    if recipe["refine"]:
        steps += refine_globals(fits[0], recipe["train"], recipe["refine"], seed)
    return fits, steps


def run_one(sim: str, variant: str, seed: int) -> dict:
    from samsvae_pyro import SAMSVAE

    adata = simulate(sim, seed)
    recipe = resolve(variant)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    start = time.perf_counter()
    (model, *others), steps = fit(adata, recipe, seed)  # an ensemble: the others' posteriors are pooled
    seconds = time.perf_counter() - start
    truth = adata.uns["sams_truth"]
    scores = model.ate_calibration("test", truth=truth, seed=seed, ensemble=others)
    row = dict(sim=sim, variant=variant, seed=seed, steps=steps,
               iwelbo=float(model.iwelbo(split="test", n_particles=50).mean()),
               effect_norm_ratio=effect_norm_ratio(model, truth), seconds=seconds)
    for kind, key in (("population", "a"), ("predictive", "b")):
        summary = scores[kind]
        row |= {f"{key}_slope": summary["slope"], f"{key}_cal_slope": summary["calibration_slope"],
                f"{key}_r": summary["pearson"]}
        row |= {f"{key}_cov{int(level * 100)}": value for level, value in summary["coverage"].items()}
        row[f"{key}_width90"] = summary["mean_width"][0.9]
    unseen = [c for c in scores["predictive"]["per_condition"].index if "+" in c and c not in model.data.conditions("train")]
    if unseen:
        row["b_cov90_unseen"] = float(scores["predictive"]["per_condition"].loc[unseen, "coverage_90"].mean())
        row["a_cov90_unseen"] = float(scores["population"]["per_condition"].loc[unseen, "coverage_90"].mean())
        row["a_slope_unseen"] = float(scores["population"]["per_condition"].loc[unseen, "slope"].mean())
    if "embedding_prior_log_scale" in dict(model.model.named_parameters()):
        row["sigma_e"] = float(model.model.embedding_prior_scale.detach())
    return row


NORMAN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "norman2019_k562_subset.h5ad"
NORMAN_PAIRS = ("KLF1+MAP2K6", "MAP2K3+SLC38A2", "MAP2K3+MAP2K6", "MAPK1+TGFBR2", "KLF1+TGFBR2")


def run_norman(split: str, variant: str, seed: int, steps: int, min_cells: int = 15) -> list[dict]:
    """Real data: the model's ATE against held-out cells' data ATE, next to the training cells' empirical ATE
    (``split="random"``: a random cell split) or the additive baseline (``split="pairs"``: the five pairs whose
    singles are measured are held out of training). The model's ATE for the held-out cells is the mean of its
    posterior-predictive data ATE (same cells' library sizes, so the same scale as the data ATE); the population
    ATE at library 1e4 (``model_ate``) is reported too."""
    import anndata as ad

    from samsvae_pyro import SAMSVAE
    from samsvae_pyro.data import random_split
    from samsvae_pyro.evaluate.ate import data_ate
    from samsvae_pyro.evaluate.baselines import additive_baseline
    from samsvae_pyro.evaluate.metrics import ate_slope
    from samsvae_pyro.evaluate.metrics import pearson as _pearson

    adata = ad.read_h5ad(NORMAN)
    adata.obs["split"] = random_split(adata.n_obs, fractions=(0.64, 0.16, 0.2), seed=seed)
    if split == "pairs":
        adata.obs.loc[adata.obs["perturbation"].isin(NORMAN_PAIRS).to_numpy(), "split"] = "test"
    recipe = resolve(variant)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="ctrl", layer="counts",
                          split_key="split")
    recipe["train"] |= {} if variant == "converged" else {"max_steps": steps}
    start = time.perf_counter()
    (model, *others), _ = fit(adata, recipe, seed, n_latent=10)
    seconds = time.perf_counter() - start
    data = model.data
    scores = model.ate_calibration("test", min_cells=min_cells, seed=seed, ensemble=others)
    held_out, predicted = scores["held_out"], scores["predictive_ate"]
    conditions = [c for c in held_out.obs_names if split == "random" or c in NORMAN_PAIRS]
    reference = np.asarray(held_out[conditions].X)
    population = model.model_ate(conditions, ensemble=others)
    rivals = {"model_predictive_mean": np.asarray(predicted[conditions].X),
              "model_population_1e4": np.asarray(population.X)}
    if split == "random":
        training = data_ate(data, cells=np.flatnonzero(data.split == "train"))
        rivals["training_empirical"] = np.asarray(training[conditions].X)
    else:
        rivals["additive"] = np.asarray(additive_baseline(data, held_out[conditions]).X)
    iwelbo = float(model.iwelbo(split="test", n_particles=50).mean())
    per_condition = scores["predictive"]["per_condition"].loc[conditions]
    rows = []
    for name, values in rivals.items():
        rows.append(dict(split=split, variant=variant, seed=seed, steps=int(model.history["step"].max()),
                         estimate=name, n_conditions=len(conditions), pearson=_pearson(values, reference),
                         slope=ate_slope(values, reference), calibration_slope=ate_slope(reference, values),
                         iwelbo=iwelbo, seconds=seconds,
                         b_cov90=float(per_condition["coverage_90"].mean()),
                         b_cov50=float(per_condition["coverage_50"].mean())))
    return rows


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    return seed_summary(rows, ["sim", "variant"], ["a_slope", "a_cov50", "a_cov90", "a_cov95", "b_slope", "b_cov50",
                                                   "b_cov90", "b_cov95", "a_r", "iwelbo", "effect_norm_ratio",
                                                   "seconds"])


def main() -> None:
    parser = grid_parser(__doc__, VARIANTS, str(Path(__file__).parent / "results" / "calibration.csv"),
                         "sim, variant, seed")
    parser.add_argument("--sims", nargs="+", choices=SIMULATIONS, default=list(SIMULATIONS))
    parser.add_argument("--norman", nargs="+", choices=("random", "pairs"),
                        help="real data instead: the Norman subset with a random cell split and/or held-out pairs")
    parser.add_argument("--steps", type=int, default=3000, help="training steps on the Norman subset")
    parser.add_argument("--diagnose", action="store_true",
                        help="print q(m) and the basal shifts of each (sim, variant, seed) instead of scoring")
    args = parser.parse_args()
    if listed(parser, args, VARIANTS, resolve):
        return
    torch.set_num_threads(args.threads)
    if args.diagnose:
        for seed in args.seeds:
            for sim in args.sims:
                for variant in args.variants:
                    diagnose(sim, variant, seed)
        return
    if args.norman:
        out = Path(args.out).with_name("calibration_norman.csv")
        for seed in args.seeds:
            for split in args.norman:
                for variant in args.variants:
                    rows = pd.DataFrame(run_norman(split, variant, seed, args.steps))
                    print(rows.to_string(index=False), flush=True)
                    rows.to_csv(out, mode="a", header=not out.exists(), index=False)
        return
    out = Path(args.out)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    for seed in args.seeds:
        for sim in args.sims:
            for variant in args.variants:
                key = (sim, variant, seed)
                if args.skip_done and len(done) and (done[["sim", "variant", "seed"]].apply(tuple, axis=1) == key).any():
                    continue
                row = run_one(sim, variant, seed)
                print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
                rows = pd.concat([pd.read_csv(out), pd.DataFrame([row])]) if out.exists() else pd.DataFrame([row])
                rows.to_csv(out, index=False)
    rows = pd.read_csv(out)
    rows = rows[rows["sim"].isin(args.sims) & rows["variant"].isin(args.variants)]
    print(summarise(rows).to_string())


if __name__ == "__main__":
    main()
