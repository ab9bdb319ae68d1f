"""Simulated perturbation screens with known sparse mechanisms (docs/model.md, section 6).

Both generators share the SAMS-VAE latent structure (docs/model.md, section 1):

    m_tk ~ Bernoulli(mask_prob),  e_tk = s_tk * Normal(effect_mean, effect_sd), s_tk = +-1,
    z_i = z_basal_i + sum_t d_it (m_t * e_t),  z_basal_i ~ Normal(0, I_K),

and a fixed random decoder h: 4 bias-free layers of 50 units with LeakyReLU(0.2), orthogonal
initial weights (QR of a Gaussian matrix), then a bias-free linear map to the G genes.

- :func:`simulate_paper` is the paper's mask-recovery simulation: x = h(z) / sd_g + Gaussian
  noise holding 20% of each gene's variance (continuous values; use ``likelihood="normal"`` and
  ``count_data=False``).
- :func:`simulate_counts` turns h(z) into negative binomial counts with a realistic library-size
  spread and a "non-targeting" control group, optionally with double perturbations.

Choices where the paper is silent: "4 layers x 50 units" is read as four hidden layers followed
by a linear output layer; the paper simulation gets 500/100/100 "control" cells by default (the
model does not need them, the design checks and data ATEs do); the count simulation gives every
perturbation at least one active latent dimension.

The ground truth is in ``adata.uns["sams_truth"]`` (mask, embedding, perturbation order,
mask_prob, for counts the true average treatment effects, and with ``n_groups`` the grouping),
``adata.obsm["z_basal"]`` and ``adata.obsm["z"]``. Every random draw comes from one
``numpy.random.default_rng(seed)``, so the same arguments give the identical AnnData.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from samsvae_pyro.data.splits import random_split
from samsvae_pyro.data.transforms import TARGET_LIBRARY

TRUTH_KEY = "sams_truth"  # adata.uns key of the ground truth

_WIDTH, _DEPTH, _SLOPE = 50, 4, 0.2  # decoder: hidden units, hidden layers, LeakyReLU slope
_NOISE_SHARE = 0.2  # paper simulation: share of each gene's variance that is noise
_LOGIT_SCALE = 0.5  # counts: sd of a gene's logit across basal cells
_BASELINE_SD = 1.0  # counts: sd of the genes' baseline logits (abundance spread)
_THETA_SD_LOG = 0.5  # counts: sd of log theta_g around log(dispersion)


# --- shared pieces


def _names(prefix: str, n: int) -> list[str]:
    width = len(str(max(n - 1, 0)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _mechanisms(
    rng: np.random.Generator,
    n_perturbations: int,
    n_latent: int,
    *,
    mask_prob: float,
    effect_mean: float,
    effect_sd: float,
    min_active: bool = False,
    group_of: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask M ~ Bernoulli(mask_prob) and embedding E = +-Normal(effect_mean, effect_sd).

    With ``min_active``, a perturbation whose mask row came out all zero gets one latent
    dimension switched on at random, so that every perturbation has an effect. With
    ``group_of`` (the group index of each perturbation), the mask row and the signs are drawn
    once per group and shared by its members; only the magnitudes are drawn per perturbation.

    Shapes
    ------
    group_of : (T,)
    mask, embedding : (T, K)
    """
    if group_of is None:
        mask, sign = _patterns(rng, n_perturbations, n_latent, mask_prob, min_active)
    else:
        mask, sign = _group_patterns(rng, int(group_of.max()) + 1, n_latent, mask_prob, min_active)
        mask, sign = mask[group_of], sign[group_of]  # (T, K) each
    embedding = sign * rng.normal(effect_mean, effect_sd, size=(n_perturbations, n_latent))
    return mask.astype(np.int64), embedding


def _patterns(
    rng: np.random.Generator, n_rows: int, n_latent: int, mask_prob: float, min_active: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Mask rows (bool) and signs (+-1), each (n_rows, K); see :func:`_mechanisms`."""
    mask = rng.random((n_rows, n_latent)) < mask_prob
    if min_active:
        empty = np.flatnonzero(~mask.any(axis=1))
        mask[empty, rng.integers(n_latent, size=len(empty))] = True
    sign = rng.choice([-1.0, 1.0], size=(n_rows, n_latent))
    return mask, sign


def _group_patterns(
    rng: np.random.Generator, n_groups: int, n_latent: int, mask_prob: float, min_active: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group patterns, redrawn (at most 100 rounds) until no two groups have the same
    active dimensions with the same signs, so that the groups can be told apart."""
    mask, sign = _patterns(rng, n_groups, n_latent, mask_prob, min_active)
    for _ in range(100):
        _, first = np.unique(np.where(mask, sign, 0.0), axis=0, return_index=True)
        repeated = np.setdiff1d(np.arange(n_groups), first)
        if not len(repeated):
            break
        redrawn = _patterns(rng, len(repeated), n_latent, mask_prob, min_active)
        mask[repeated], sign[repeated] = redrawn
    return mask, sign


def _grouping(n_perturbations: int, n_groups: int) -> np.ndarray | None:
    """Group index of each perturbation: ``n_groups`` consecutive near-equal blocks (None for 0)."""
    if not 0 <= n_groups <= n_perturbations:
        raise ValueError(
            f"n_groups={n_groups} must lie between 0 (no groups) and "
            f"n_perturbations={n_perturbations}."
        )
    if n_groups == 0:
        return None
    sizes = [len(block) for block in np.array_split(np.arange(n_perturbations), n_groups)]
    return np.repeat(np.arange(n_groups), sizes)


def _group_truth(names: list[str], group_of: np.ndarray | None) -> dict:
    """``{"groups": {"G0": [members], ...}}`` for grouped simulations, else nothing."""
    if group_of is None:
        return {}
    labels = _names("G", int(group_of.max()) + 1)
    members = [[names[t] for t in np.flatnonzero(group_of == i)] for i in range(len(labels))]
    return {"groups": dict(zip(labels, members))}


def _orthogonal(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) matrix with orthonormal rows or columns (sign-corrected QR of a Gaussian)."""
    q, r = np.linalg.qr(rng.standard_normal((max(n_in, n_out), min(n_in, n_out))))
    q = q * np.sign(np.diag(r))
    return q if n_in >= n_out else q.T


def _decoder_weights(rng: np.random.Generator, n_latent: int, n_genes: int) -> list[np.ndarray]:
    sizes = [n_latent] + [_WIDTH] * _DEPTH + [n_genes]
    return [_orthogonal(rng, a, b) for a, b in itertools.pairwise(sizes)]


def _decode(weights: list[np.ndarray], z: np.ndarray) -> np.ndarray:
    """Decoder output h(z): LeakyReLU hidden layers, linear output. z : (..., K) -> (..., G)."""
    h = z.reshape(-1, z.shape[-1])  # 2-d products use BLAS
    for w in weights[:-1]:
        h = h @ w
        h = np.maximum(h, _SLOPE * h)  # LeakyReLU, slope < 1
    return (h @ weights[-1]).reshape(*z.shape[:-1], -1)


def _one_hot_sum(members: list[tuple[int, ...]], n_perturbations: int) -> np.ndarray:
    """(C, T) dosage rows of conditions given as tuples of perturbation positions."""
    dosage = np.zeros((len(members), n_perturbations))
    for row, ms in enumerate(members):
        dosage[row, list(ms)] = 1.0
    return dosage


def _anndata(
    x: np.ndarray | sp.csr_matrix,
    labels: np.ndarray,
    split: np.ndarray,
    z_basal: np.ndarray,
    z: np.ndarray,
    truth: dict,
) -> AnnData:
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels),
            "split": pd.Categorical(split, categories=["train", "val", "test"]),
        },
        index=_names("cell_", len(labels)),
    )
    gene_names = _names("gene_", x.shape[1])
    adata = AnnData(X=x, obs=obs, var=pd.DataFrame({"gene_name": gene_names}, index=gene_names))
    adata.obsm["z_basal"] = z_basal.astype(np.float32)
    adata.obsm["z"] = z.astype(np.float32)
    adata.uns[TRUTH_KEY] = truth
    return adata


def _truth(names: list[str], mask: np.ndarray, embedding: np.ndarray, mask_prob: float) -> dict:
    return {
        "mask": mask,
        "embedding": embedding,
        "perturbations": names,
        "mask_prob": float(mask_prob),
    }


# --- paper simulation


def simulate_paper(
    *,
    n_latent: int = 15,
    n_perturbations: int = 100,
    n_genes: int = 100,
    mask_prob: float = 2 / 15,
    effect_mean: float = 5.0,
    effect_sd: float = 0.5,
    cells_per_perturbation: tuple[int, int, int] = (500, 100, 100),
    n_control_cells: tuple[int, int, int] | None = None,
    n_groups: int = 0,
    n_double: int = 0,
    seed: int = 0,
) -> AnnData:
    """The paper's SAMS-VAE simulation for mask recovery (docs/model.md, section 6).

    x_i = h(z_i) / sd_g + eps_i, eps ~ Normal(0, 0.25 I): after division by its per-gene sd
    (over all simulated cells) the mean has unit variance, so the noise holds 0.25 / 1.25 = 20%
    of each gene's variance. Each perturbation gets (train, val, test) cells as given, in
    ``obs["split"]``. Control cells (zero dosage, label "control") are not needed to fit the
    model but make data ATEs and the design checks work; by default there are as many as for
    one perturbation (500/100/100).

    Parameters
    ----------
    n_latent, n_perturbations, n_genes
        K, T and G.
    mask_prob
        Bernoulli probability of each mask entry.
    effect_mean, effect_sd
        |e_tk| ~ Normal(effect_mean, effect_sd) with a random sign.
    cells_per_perturbation
        (train, val, test) cells of each perturbation.
    n_control_cells
        (train, val, test) control cells; ``None`` means ``cells_per_perturbation``.
    n_groups
        0 (the paper's setting) or the number of groups of consecutive perturbations that
        share a mask row and a sign pattern (see :func:`simulate_counts`).
    n_double
        Number of random pairs "A+B" added as double perturbations (d = 1_A + 1_B), each with
        ``cells_per_perturbation`` cells; not in the paper (0), added because pairs tie the latent
        geometry between the single perturbations' cell clouds (issue 11).
    seed
        Seed of every random draw.

    Returns
    -------
    AnnData with dense float32 X, obs "perturbation" (labels "P000"...) and "split",
    obsm "z_basal" and "z", var "gene_name", uns "sams_truth".

    Shapes
    ------
    X : (N, G)
    obsm["z_basal"], obsm["z"] : (N, K)
    uns["sams_truth"]["mask"], uns["sams_truth"]["embedding"] : (T, K)

    Examples
    --------
    >>> adata = simulate_paper(n_perturbations=4, cells_per_perturbation=(5, 2, 2))
    >>> adata.shape, adata.uns["sams_truth"]["mask"].shape
    ((45, 100), (4, 15))
    """
    group_of = _grouping(n_perturbations, n_groups)
    rng = np.random.default_rng(seed)
    mask, embedding = _mechanisms(
        rng,
        n_perturbations,
        n_latent,
        mask_prob=mask_prob,
        effect_mean=effect_mean,
        effect_sd=effect_sd,
        group_of=group_of,
    )
    names = _names("P", n_perturbations)
    members = [()] + [(t,) for t in range(n_perturbations)]  # control first
    if n_double:  # drawn only when asked, so the paper's setting keeps its random stream
        members += _double_members(rng, n_perturbations, n_double)
    counts = [n_control_cells or cells_per_perturbation] + [cells_per_perturbation] * (len(members) - 1)
    condition = np.repeat(np.arange(len(members)), [sum(c) for c in counts])  # (N,) 0 = control
    split = np.concatenate([np.repeat(["train", "val", "test"], c) for c in counts])
    shifts = _one_hot_sum(members, n_perturbations) @ (mask * embedding)  # (C + 1, K)
    z_basal = rng.standard_normal((len(condition), n_latent))  # (N, K)
    z = z_basal + shifts[condition]  # (N, K)
    mean = _decode(_decoder_weights(rng, n_latent, n_genes), z)  # (N, G)
    mean /= mean.std(axis=0)
    noise_sd = np.sqrt(_NOISE_SHARE / (1 - _NOISE_SHARE))
    x = (mean + noise_sd * rng.standard_normal(mean.shape)).astype(np.float32)
    conditions = ["control"] + ["+".join(names[t] for t in ms) for ms in members[1:]]
    labels = np.array(conditions, dtype=object)[condition]
    truth = _truth(names, mask, embedding, mask_prob) | _group_truth(names, group_of)
    return _anndata(x, labels, split, z_basal, z, truth)


# --- count simulation


class _CountDecoder:
    """Gene proportions rho(z) = softmax(b_g + 0.5 h(z)_g / sd_g) and NB inverse dispersions.

    sd_g is the sd of h(z_basal)_g over the basal latents it is fitted on, so a gene's logit
    varies across unperturbed cells with sd 0.5; b_g ~ Normal(0, 1) spreads gene abundances.
    """

    def __init__(
        self, rng: np.random.Generator, z_basal: np.ndarray, n_genes: int, dispersion: float
    ):
        self.weights = _decoder_weights(rng, z_basal.shape[1], n_genes)
        self.gene_sd = _decode(self.weights, z_basal).std(axis=0)  # (G,)
        self.baseline = _BASELINE_SD * rng.standard_normal(n_genes)  # (G,)
        self.theta = dispersion * np.exp(_THETA_SD_LOG * rng.standard_normal(n_genes))  # (G,)

    def rho(self, z: np.ndarray) -> np.ndarray:
        """(..., K) -> (..., G) gene proportions."""
        logits = self.baseline + _LOGIT_SCALE * _decode(self.weights, z) / self.gene_sd
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=-1, keepdims=True)

    def sample(self, rng: np.random.Generator, z: np.ndarray, library: np.ndarray) -> np.ndarray:
        """NB counts with mean library * rho(z) (gamma-Poisson); library : (...) broadcasts."""
        mean = library[..., None] * self.rho(z)
        return rng.poisson(rng.gamma(self.theta, mean / self.theta))


def _double_members(
    rng: np.random.Generator, n_perturbations: int, n_double: int
) -> list[tuple[int, ...]]:
    pairs = list(itertools.combinations(range(n_perturbations), 2))
    if n_double > len(pairs):
        raise ValueError(
            f"n_double={n_double} exceeds the {len(pairs)} distinct pairs of "
            f"{n_perturbations} perturbations."
        )
    return [pairs[i] for i in np.sort(rng.choice(len(pairs), size=n_double, replace=False))]


def _true_ate(
    rng: np.random.Generator, decoder: _CountDecoder, shifts: np.ndarray, n_samples: int
) -> np.ndarray:
    """Monte Carlo ATE under f(x) = log2(1 + 1e4 x / sum_g x) at library size 1e4.

    The same z_basal draws serve every condition and the control (common random numbers).

    Shapes
    ------
    shifts : (C, K) latent shift of each condition
    ate : (C, G)
    """
    z_basal = rng.standard_normal((n_samples, shifts.shape[1]))  # (S, K)
    z = z_basal + np.vstack([np.zeros(shifts.shape[1]), shifts])[:, None]  # (C + 1, S, K)
    x = decoder.sample(rng, z, np.full(z.shape[:2], TARGET_LIBRARY))  # (C + 1, S, G)
    f = np.log2(1 + TARGET_LIBRARY * x / np.maximum(x.sum(axis=-1, keepdims=True), 1)).mean(axis=1)
    return f[1:] - f[0]


def simulate_counts(
    *,
    n_latent: int = 8,
    n_perturbations: int = 12,
    n_genes: int = 60,
    cells_per_perturbation: int = 200,
    n_control_cells: int | None = None,
    mask_prob: float | None = None,
    effect_mean: float = 2.5,
    effect_sd: float = 0.5,
    n_double: int = 0,
    library_mean: float | None = None,
    library_sd_log: float = 0.4,
    dispersion: float = 5.0,
    split_fractions: tuple[float, float, float] = (0.64, 0.16, 0.2),
    n_ate_samples: int = 2000,
    n_groups: int = 0,
    seed: int = 0,
) -> AnnData:
    """Negative binomial counts from the SAMS-VAE generative process, with known ATEs.

    x_ig ~ NB(mean l_i rho_g(z_i), inverse dispersion theta_g), rho = softmax over genes of
    b_g + 0.5 h(z)_g / sd_g (see the module docstring for h). Choices:

    - every perturbation has at least one active latent dimension (an all-zero mask row gets
      one dimension at random), so every perturbation has an effect;
    - a gene's logit varies with sd 0.5 across basal cells, and an active dimension shifts z by
      about ``effect_mean`` = 2.5 basal sds. With the defaults (checked for seeds 0-5) each
      perturbation's most responsive gene changes its mean by 1.9 to 13 fold (median about
      3 fold), and its true ATE exceeds 7 standard errors of a 200-cell vs 200-cell difference:
      clearly visible, not saturated;
    - b_g ~ Normal(0, 1) spreads gene abundances; theta_g = ``dispersion`` x LogNormal(0, 0.5);
    - l_i ~ LogNormal with mean ``library_mean`` (default 15 G: about 15 counts per gene on
      average, median gene about 8) and sd of log ``library_sd_log`` (5-95% range about 2x
      either side of the median, as in droplet data).

    Parameters
    ----------
    n_latent, n_perturbations, n_genes
        K, T and G.
    cells_per_perturbation
        Cells of each single perturbation and of each double combination.
    n_control_cells
        Control cells (label "non-targeting"); ``None`` means ``cells_per_perturbation``.
    mask_prob
        Bernoulli probability of each mask entry; ``None`` means 2 / n_latent.
    effect_mean, effect_sd
        |e_tk| ~ Normal(effect_mean, effect_sd) with a random sign.
    n_double
        Number of random pairs "A+B" added as double perturbations (d = 1_A + 1_B).
    library_mean, library_sd_log
        Mean library size and sd of its logarithm.
    dispersion
        Typical NB inverse dispersion theta.
    split_fractions
        (train, val, test) fractions of the random cell split in ``obs["split"]``.
    n_ate_samples
        Monte Carlo samples per condition for ``uns["sams_truth"]["true_ate"]``.
    n_groups
        0 (default: every perturbation has its own mechanism) or the number of groups of
        consecutive perturbations ("P00"-"P02" in "G0", ...; sizes differ by at most one).
        Members of a group share their mask row and the signs of their embedding, with
        magnitudes drawn per perturbation, so they act on the same latent dimensions in the
        same directions, like subunits of one complex; no two groups share both (patterns are
        redrawn until they differ, where K allows). The grouping is stored in
        ``uns["sams_truth"]["groups"]`` (group -> member perturbations).
    seed
        Seed of every random draw.

    Returns
    -------
    AnnData with CSR float32 integer counts in X, obs "perturbation" and "split", obsm
    "z_basal" and "z", var "gene_name", uns "sams_truth" (mask, embedding, perturbations,
    mask_prob, true_ate, true_ate_conditions, theta; groups when ``n_groups > 0``).

    Shapes
    ------
    X : (N, G)
    obsm["z_basal"], obsm["z"] : (N, K)
    uns["sams_truth"]["mask"], uns["sams_truth"]["embedding"] : (T, K)
    uns["sams_truth"]["true_ate"] : (C, G), one row per non-control condition

    Examples
    --------
    >>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=20, n_double=1)
    >>> adata.shape, list(adata.uns["sams_truth"]["true_ate_conditions"])
    ((100, 60), ['P0', 'P1', 'P2', 'P0+P2'])
    """
    group_of = _grouping(n_perturbations, n_groups)
    rng = np.random.default_rng(seed)
    mask_prob = 2 / n_latent if mask_prob is None else mask_prob
    mask, embedding = _mechanisms(
        rng, n_perturbations, n_latent, mask_prob=mask_prob, effect_mean=effect_mean,
        effect_sd=effect_sd, min_active=True, group_of=group_of,
    )  # fmt: skip
    names = _names("P", n_perturbations)
    singles = [(t,) for t in range(n_perturbations)]
    members = [()] + singles + _double_members(rng, n_perturbations, n_double)
    sizes = [cells_per_perturbation] * len(members)
    sizes[0] = cells_per_perturbation if n_control_cells is None else n_control_cells
    condition = np.repeat(np.arange(len(members)), sizes)  # (N,) 0 = control
    shifts = _one_hot_sum(members, n_perturbations) @ (mask * embedding)  # (C + 1, K)
    z_basal = rng.standard_normal((len(condition), n_latent))  # (N, K)
    z = z_basal + shifts[condition]  # (N, K)
    decoder = _CountDecoder(rng, z_basal, n_genes, dispersion)
    mean_library = 15.0 * n_genes if library_mean is None else library_mean
    log_mean = np.log(mean_library) - library_sd_log**2 / 2  # so that E[l] = mean_library
    library = rng.lognormal(log_mean, library_sd_log, len(condition))  # (N,)
    x = sp.csr_matrix(decoder.sample(rng, z, library).astype(np.float32))  # (N, G)
    conditions = ["+".join(names[t] for t in ms) for ms in members[1:]]
    truth = _truth(names, mask, embedding, mask_prob) | {
        "true_ate": _true_ate(rng, decoder, shifts[1:], n_ate_samples),
        "true_ate_conditions": conditions,
        "theta": decoder.theta,
    } | _group_truth(names, group_of)
    labels = np.array(["non-targeting"] + conditions, dtype=object)[condition]
    split = random_split(len(condition), fractions=split_fractions, seed=seed)
    return _anndata(x, labels, split, z_basal, z, truth)
