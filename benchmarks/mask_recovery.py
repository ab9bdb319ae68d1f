"""Mask-recovery inference experiments (issue 7): one model, many inference recipes, one table.

Trains SAMS-VAE with each inference variant on simulations with a known mask, over several seeds,
and prints one row per (simulation, variant): mask F1 at q > 0.5 (Hungarian-matched), AUROC, the
fraction of entries estimated on vs truly on, the share of true latents the mask identifies
(``identifiable``, the intersection criterion of ``evaluate.identifiable_latents``), the relative
residuals of the true effects after the best rotation (``procrustes``) or linear map (``linear``) of the
posterior-mean effects E_q[e * m], held-out IWELBO (test cells), ATE Pearson against the simulation's true
ATE (count simulations) or the data ATE (paper simulations, "mean" ATE), and wall time.
Every variant changes only guides, estimators, schedules or initialisation; the model is fixed.

Simulations
-----------
* ``counts``: the CI-size count simulation (``simulate_counts`` defaults: K = 8, T = 12, 60 genes,
  200 cells per perturbation plus controls), NB likelihood.
* ``paper``: the paper's simulation (docs/model.md, section 6: K = 15, T = 100, G = 100, 500/100/100 cells per
  perturbation, mask probability 2/15, effects +-5), Normal likelihood.
* ``counts24`` (issue 11): the count simulation with T = 24 perturbations over K = 8 (density 0.25, every
  latent identifiable for seeds 0-2), mask prior 0.25.
* ``paper_doubles``, ``paper_small``: the paper simulation with 100 double perturbations added, or with
  effects of 2 instead of 5 basal standard deviations.

Usage
-----
    python benchmarks/mask_recovery.py --sim counts --seeds 0 1 2 --steps 1000
    python benchmarks/mask_recovery.py --sim paper --variants paper identifiable --steps 4000
    python benchmarks/mask_recovery.py --list

Rows are appended to ``--out`` (CSV, default ``mask_recovery.csv``) as they finish, so long grids can be
interrupted and resumed with ``--skip-done``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grid import grid_parser, listed, seed_summary

from samsvae_pyro import simulate_counts, simulate_paper

# Each variant: model / guide options and training options on top of BASE (the paper's recipe,
# docs/model.md, sections 2-3: correlated guide, offset-aware encoder with the paper's parametrisation (no offset
# subtraction), straight-through masks at temperature 1, Trace_ELBO, 5 particles, lr 3e-4, no annealing).
BASE = dict(guide="correlated", model={}, guide_kwargs=dict(subtract_offset=False),
            train=dict(lr=3e-4, n_particles=5, estimator="trace"))
VARIANTS: dict[str, dict] = {
    "paper": {},
    "paper_mean_field": dict(guide="mean_field"),
    "no_offset": dict(guide_kwargs=dict(use_offset=False)),
    "no_offset_mean_field": dict(guide="mean_field", guide_kwargs=dict(use_offset=False)),
    "lr_3e-3": dict(train=dict(lr=3e-3)),
    "lr_1e-2": dict(train=dict(lr=1e-2)),
    "mean_field_lr_3e-3": dict(guide="mean_field", train=dict(lr=3e-3)),
    "analytic_kl": dict(guide="mean_field", train=dict(lr=3e-3, estimator="mean_field")),
    "score_function": dict(guide="mean_field", guide_kwargs=dict(mask_gradient="score"),
                           train=dict(lr=3e-3, estimator="tracegraph")),
    "temperature_anneal": dict(train=dict(lr=3e-3, schedules={"mask_temperature": (2.0, 0.3, "half")})),
    "kl_warmup": dict(train=dict(lr=3e-3, schedules={"kl_weight": (0.0, 1.0, "half")})),
    "sparsity_warmup": dict(train=dict(lr=3e-3, schedules={"global_kl_weight": (20.0, 1.0, "half")})),
    "init_logit_-3": dict(guide_kwargs=dict(mask_init_logit=-3.0), train=dict(lr=3e-3)),
    # issue 14: the mask started on, which removes most of the ATE shrinkage (benchmarks/calibration.py mask_init_3)
    "init_logit_3": dict(guide_kwargs=dict(mask_init_logit=3.0), train=dict(lr=3e-3)),
    "init_logit_1": dict(guide_kwargs=dict(mask_init_logit=1.0), train=dict(lr=3e-3)),
    "init_logit_1.5": dict(guide_kwargs=dict(mask_init_logit=1.5), train=dict(lr=3e-3)),
    "lr_3e-3_lr_globals_1e-2": dict(train=dict(lr=3e-3, lr_globals=1e-2)),
    "init_logit_1_lr_globals_1e-2": dict(guide_kwargs=dict(mask_init_logit=1.0), train=dict(lr=3e-3, lr_globals=1e-2)),
    "lr_split": dict(train=dict(lr=1e-3, lr_globals=1e-2)),
    "beta_bernoulli_learned": dict(model=dict(mask_prior="beta_bernoulli", learn_mask_prior=True),
                                   train=dict(lr=3e-3)),
    "bernoulli_learned": dict(model=dict(learn_mask_prior=True), train=dict(lr=3e-3)),
    # the best plain recipe (mean-field guide, lr 3e-3) combined with the schedules and initialisations
    "mf_temperature_anneal": dict(guide="mean_field", train=dict(lr=3e-3, schedules={"mask_temperature": (2.0, 0.3, "half")})),
    "mf_sparsity_warmup": dict(guide="mean_field", train=dict(lr=3e-3, schedules={"global_kl_weight": (20.0, 1.0, "half")})),
    "mf_init_logit_-3": dict(guide="mean_field", guide_kwargs=dict(mask_init_logit=-3.0), train=dict(lr=3e-3)),
    "mf_particles_20": dict(guide="mean_field", train=dict(lr=3e-3, n_particles=20)),
    # own idea: the encoder predicts the whole latent state and the offset is subtracted (no absorption)
    "subtract_offset": dict(guide_kwargs=dict(subtract_offset=True), train=dict(lr=3e-3)),
    "mf_subtract_offset": dict(guide="mean_field", guide_kwargs=dict(subtract_offset=True), train=dict(lr=3e-3)),
    "mf_subtract_offset_x_only": dict(guide="mean_field", guide_kwargs=dict(subtract_offset=True, use_offset=False),
                                      train=dict(lr=3e-3)),
    # own idea: dense start, then rotate the latent basis to varimax-sparse effects, then learn the mask
    "mf_varimax_start": dict(guide="mean_field", guide_kwargs=dict(mask_init_logit=6.0), train=dict(lr=3e-3),
                             align="0.3"),
    # issue 11: the sparse-mask hooks (samsvae_pyro.infer.sparse_mask); "sparse" is train(inference="sparse")
    "sparse": dict(train=dict(lr=3e-3, inference="sparse")),
    "mf_sparse": dict(guide="mean_field", train=dict(lr=3e-3, inference="sparse")),
    "sparse_so": dict(guide_kwargs=dict(subtract_offset=True), train=dict(lr=3e-3, inference="sparse")),
    # the mean-field guide with a sharper relaxation late, or faster q(E) (compensating switched-off entries)
    # (measured with q(E) at the trainer's lr 3e-3, before the recipe gave the mean-field q(E) a step size of 1e-2)
    "mf_sparse_slow_embedding": dict(guide="mean_field", train=dict(lr=3e-3, inference=dict(embedding_lr=None))),
    "mf_sparse_slow_embedding_temperature": dict(guide="mean_field", train=dict(
        lr=3e-3, inference=dict(embedding_lr=None), schedules={"mask_temperature": (1.0, 0.3, "half")})),
    "mf_sparse_temperature": dict(guide="mean_field", train=dict(
        lr=3e-3, inference="sparse", schedules={"mask_temperature": (1.0, 0.3, "half")})),
    # the parts: the constraint alone; teleports with other logit resets; threshold-freeze-refit at 80%
    "constraint": dict(train=dict(lr=3e-3, inference=dict(teleport=()))),
    "mf_constraint": dict(guide="mean_field", train=dict(lr=3e-3, inference=dict(teleport=(), embedding_lr=None))),
    "sparse_freeze": dict(train=dict(lr=3e-3, inference=dict(freeze=0.8))),
    "mf_sparse_freeze": dict(guide="mean_field", train=dict(lr=3e-3, inference=dict(freeze=0.8, embedding_lr=None))),
    "sparse_so_freeze": dict(guide_kwargs=dict(subtract_offset=True), train=dict(lr=3e-3, inference=dict(freeze=0.8))),
    "mf_sparse_so_freeze": dict(guide="mean_field", guide_kwargs=dict(subtract_offset=True),
                                train=dict(lr=3e-3, inference=dict(freeze=0.8, embedding_lr=None))),
    "teleport_snr": dict(train=dict(lr=3e-3, inference=dict(reset="snr", freeze=0.8))),
    "teleport_rank": dict(train=dict(lr=3e-3, inference=dict(reset="rank", freeze=0.8))),
    "mf_teleport_snr": dict(guide="mean_field", train=dict(lr=3e-3, inference=dict(reset="snr", freeze=0.8,
                                                                                 embedding_lr=None))),
    "mf_teleport_rank": dict(guide="mean_field", train=dict(lr=3e-3, inference=dict(reset="rank", freeze=0.8,
                                                                                  embedding_lr=None))),
}

SIMULATIONS = {
    "counts": dict(n_latent=8, likelihood="nb", method="perturbseq", n_hidden=128, batch_size=256,
                   mask_prior_prob=0.1),
    "paper": dict(n_latent=15, likelihood="normal", method="mean", n_hidden=128, batch_size=512,
                  mask_prior_prob=2 / 15),
}
# issue 11: an identifiable count simulation (T = 24 over K = 8 at density 0.25) and the paper simulation with
# 100 double perturbations added or with effects of 2 instead of 5 basal standard deviations
SIMULATIONS |= {
    "counts24": dict(SIMULATIONS["counts"], mask_prior_prob=0.25),
    "paper_doubles": SIMULATIONS["paper"],
    "paper_small": SIMULATIONS["paper"],
}
GENERATORS = {
    "counts": lambda seed: simulate_counts(seed=seed),
    "counts24": lambda seed: simulate_counts(n_perturbations=24, seed=seed),
    "paper": lambda seed: simulate_paper(seed=seed),
    "paper_doubles": lambda seed: simulate_paper(n_double=100, seed=seed),
    "paper_small": lambda seed: simulate_paper(effect_mean=2.0, seed=seed),
}


def simulate(sim: str, seed: int):
    adata = GENERATORS[sim](seed)
    return adata, "non-targeting" if sim.startswith("counts") else "control"


def resolve(variant: str, steps: int) -> dict:
    spec = VARIANTS[variant]
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in spec.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) else value
    schedules = out["train"].get("schedules")
    if schedules:  # "half": over the first half of training
        out["train"]["schedules"] = {k: tuple(steps // 2 if x == "half" else x for x in v) for k, v in schedules.items()}
    return out


def run_one(sim: str, variant: str, seed: int, steps: int, iwelbo_particles: int) -> dict:
    from samsvae_pyro import SAMSVAE
    from samsvae_pyro.evaluate import effect_residuals, identifiable_latents, mask_recovery
    from samsvae_pyro.evaluate.ate import data_ate
    from samsvae_pyro.evaluate.metrics import pearson

    adata, control = simulate(sim, seed)
    size, recipe = SIMULATIONS[sim], resolve(variant, steps)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label=control, split_key="split",
                          count_data=size["likelihood"] != "normal")
    guide_kwargs = dict(recipe["guide_kwargs"])
    if recipe["guide"] == "correlated":
        guide_kwargs = {"embedding_hidden": size["n_hidden"], **guide_kwargs}
    model = SAMSVAE(adata, n_latent=size["n_latent"], n_hidden=size["n_hidden"], likelihood=size["likelihood"],
                    mask_prior_prob=size["mask_prior_prob"], guide=recipe["guide"], guide_kwargs=guide_kwargs,
                    device="cpu", seed=seed, **recipe["model"])
    callback = None
    if "align" in recipe:
        callback = VarimaxStart(model, int(float(recipe["align"]) * steps))
    start = time.perf_counter()
    model.train(max_steps=steps, batch_size=size["batch_size"], val_every=max(steps // 10, 1), seed=seed,
                progress=False, callback=callback, **recipe["train"])
    seconds = time.perf_counter() - start
    truth = adata.uns["sams_truth"]
    q = model.mask_probabilities()
    true_mask = pd.DataFrame(np.asarray(truth["mask"]), index=list(truth["perturbations"]))
    scores = mask_recovery(true_mask, q)
    effects, _ = model.posterior_effects()
    residuals = effect_residuals(effects.loc[true_mask.index], true_mask * np.asarray(truth["embedding"]))
    if "true_ate" in truth:
        conditions, reference = list(truth["true_ate_conditions"]), np.asarray(truth["true_ate"])
    else:
        data = data_ate(model.data, method=size["method"])
        conditions, reference = list(data.obs_names), np.asarray(data.X)
    ate = model.model_ate(conditions, method=size["method"], n_global_draws=20, samples_per_draw=20)
    return dict(sim=sim, variant=variant, seed=seed, steps=steps, f1=scores["f1"], auroc=scores["auroc"],
                fraction_on=scores["fraction_on"], fraction_true=scores["fraction_true"],
                identifiable=float(identifiable_latents(true_mask).mean()), procrustes=residuals["procrustes"],
                linear=residuals["linear"],
                iwelbo=float(model.iwelbo(split="test", n_particles=iwelbo_particles).mean()),
                ate_pearson=pearson(np.asarray(ate.X), reference), seconds=seconds)


def varimax(loadings: torch.Tensor, iterations: int = 200, tol: float = 1e-7) -> torch.Tensor:
    """Orthogonal R (K, K) maximising the varimax criterion of ``loadings @ R`` (Kaiser's criterion, SVD updates)."""
    p, k = loadings.shape
    rotation, total = torch.eye(k), 0.0
    for _ in range(iterations):
        rotated = loadings @ rotation
        target = rotated**3 - rotated @ torch.diag((rotated**2).sum(0)) / p
        u, s, vh = torch.linalg.svd(loadings.T @ target)
        rotation, previous, total = u @ vh, total, float(s.sum())
        if previous and total / previous < 1 + tol:
            break
    return rotation


class VarimaxStart:
    """Experiment: masks frozen on for the first ``steps``; then the latent basis is rotated so that the dense
    effects E are varimax-sparse (z' = z R leaves the isotropic basal prior, the E prior and the likelihood
    unchanged once decoder, encoder and q(E) are rotated with it), mask logits are set from |E'|, and the
    mask is learned from there. Mean-field guide only (q(E) parameters are rotated directly)."""

    def __init__(self, model, steps: int):
        self.model, self.steps = model, steps
        model.guide.mask.logits.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, trainer) -> None:
        if trainer.step != self.steps:
            return
        from samsvae_pyro.infer.rotation import rotate_latent_space

        guide = self.model.guide
        rotate_latent_space(self.model.model, guide, varimax(guide.E_loc.detach().clone()))
        guide.mask.logits.copy_((4 * (guide.E_loc.abs() - 1.0)).clamp(-4, 4))
        guide.mask.logits.requires_grad_(True)
        trainer.optimizer.state.clear()  # moments of the old basis


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    # rows from before issue 11 lack the residual columns: seed_summary keeps the metrics present
    return seed_summary(rows, ["sim", "variant", "steps"], ["f1", "auroc", "fraction_on", "fraction_true",
                                                            "identifiable", "procrustes", "linear", "iwelbo",
                                                            "ate_pearson", "seconds"])


def main() -> None:
    parser = grid_parser(__doc__, VARIANTS, "mask_recovery.csv", "sim, variant, seed, steps")
    parser.add_argument("--sim", choices=sorted(SIMULATIONS), default="counts")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--iwelbo-particles", type=int, default=20)
    args = parser.parse_args()
    if listed(parser, args, VARIANTS, lambda name: resolve(name, args.steps)):
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    for seed in args.seeds:
        for variant in args.variants:
            key = (args.sim, variant, seed, args.steps)
            if args.skip_done and len(done) and (done[["sim", "variant", "seed", "steps"]].apply(tuple, axis=1) == key).any():
                continue
            row = run_one(args.sim, variant, seed, args.steps, args.iwelbo_particles)
            print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)  # new columns join the old rows
            done.to_csv(out, index=False)
    rows = pd.read_csv(out)
    rows = rows[(rows["sim"] == args.sim) & rows["variant"].isin(args.variants) & (rows["steps"] == args.steps)]
    print(summarise(rows).to_string())


if __name__ == "__main__":
    main()
