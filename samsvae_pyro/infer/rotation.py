"""Rotations of the latent space: the sparsest orthogonal basis of the effects, applied to model and guide.

With an isotropic basal prior N(0, I) and an isotropic effect prior N(0, sigma_e^2 I), the SAMS-VAE
likelihood and priors are invariant to z -> z R for any orthogonal R once the decoder's first layer,
the encoder and q(E) are rotated along (von Kuegelgen et al., arXiv 2504.18522): with every mask
entry on, (z_basal R) + d (E R) = z R. Only the mask can pick the basis. :func:`sparse_rotation`
searches the orthogonal R making the current effects sparsest; :func:`rotate_latent_space` moves
the model and a built-in guide to that basis.

Exactness: means and the decoder are rotated exactly. A diagonal Gaussian (q(E), q(z_basal))
stays diagonal: q(e_t) gets the diagonal of the rotated covariance (exact marginal variances); the
networks' log-variance outputs, linear in their last hidden layer, get log var @ R**2 (the log of a
weighted geometric mean, R**2 being doubly stochastic). Both are exact when the variances are
isotropic, and the model terms log p are exact always. Sampled masks with zeros are not rotated:
apply the move while the mask is dense.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

OBJECTIVES = ("l1", "l4")


def sparse_rotation(
    effects: Tensor, *, objective: str = "l1", restarts: int = 32, iterations: int = 300, lr: float = 0.05,
    seed: int = 0,
) -> Tensor:
    """Orthogonal R minimising the sparsity objective of the row-normalised effects ``effects @ R``.

    Rows are scaled to unit norm first (Kaiser normalisation), so each perturbation counts once.
    ``"l1"``: sum of |a_tk| (smoothed as sqrt(a^2 + 1e-6)); ``"l4"``: minus the sum of a_tk^4
    (quartimax). R = R_0 exp(S - S^T) with Adam on S (cosine-decayed step size), from the identity and ``restarts - 1``
    random orthogonal R_0 (QR of Gaussians, one ``torch.Generator`` seeded with ``seed``); the
    restart with the lowest objective wins.

    Shapes
    ------
    effects : (T, K). Returns R : (K, K), on the device and dtype of ``effects``.

    Examples
    --------
    >>> truth = torch.eye(3).repeat(2, 1) * 2.0  # axis-aligned effects
    >>> q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    >>> r = sparse_rotation(truth @ q, restarts=8)
    >>> bool(((truth @ q @ r).abs().max(dim=1).values > 1.99).all())
    True
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r} is not supported; choose one of {OBJECTIVES}.")
    if effects.ndim != 2 or restarts < 1:
        raise ValueError(f"effects {tuple(effects.shape)} must be (T, K) and restarts={restarts} >= 1.")
    a = effects.detach().double()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = a.shape[1]
    generator = torch.Generator().manual_seed(seed)
    start = torch.linalg.qr(torch.randn(restarts, k, k, generator=generator, dtype=torch.float64))[0]
    start[0] = torch.eye(k, dtype=torch.float64)
    start = start.to(a.device)
    skew = torch.zeros_like(start, requires_grad=True)
    optimizer = torch.optim.Adam([skew], lr=lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)  # settles on the kinks of |x|

    def loss(rotation: Tensor, smooth: float) -> Tensor:  # (restarts,)
        rotated = a @ rotation  # (restarts, T, K)
        if objective == "l4":
            return -(rotated**4).sum(dim=(-2, -1))
        return torch.sqrt(rotated**2 + smooth).sum(dim=(-2, -1))

    with torch.enable_grad():
        for _ in range(iterations):
            optimizer.zero_grad()
            loss(start @ torch.linalg.matrix_exp(skew - skew.transpose(-1, -2)), 1e-6).sum().backward()
            optimizer.step()
            decay.step()
    with torch.no_grad():
        rotations = start @ torch.linalg.matrix_exp(skew - skew.transpose(-1, -2))
        best = int(loss(rotations, 0.0).argmin())
    return rotations[best].to(effects.dtype)


def effect_moments(guide: nn.Module, n_samples: int = 64) -> tuple[Tensor, Tensor]:
    """Mean and sd of e_t * m_t under the guide's q(M) q(E | M), from ``n_samples`` draws.

    Uses the guide's ``mask.mask_distribution()`` and ``embedding_posterior(mask)`` (the built-in
    SAMS-VAE guides). Shapes: returns two (T, K) tensors.
    """
    with torch.no_grad():
        mask = guide.mask.mask_distribution().sample((n_samples,))  # (S, T, K)
        effects = guide.embedding_posterior(mask).sample() * mask  # (S, T, K)
    return effects.mean(0), effects.std(0)


@torch.no_grad()
def rotate_latent_space(model: nn.Module, guide: nn.Module, rotation: Tensor) -> None:
    """Move a SAMS-VAE model and its built-in guide to the latent basis z' = z R, in place.

    Rotated: the decoder's first layer (W -> W R), the basal encoder (mean output, log-variance
    output, and its latent-offset input block), and q(E): the mean-field guide's means and scales,
    or the correlated guide's network output. The mask posterior is left to the caller.

    Shapes
    ------
    rotation : (K, K), orthogonal.
    """
    k = model.n_latent
    if rotation.shape != (k, k):
        raise ValueError(f"rotation {tuple(rotation.shape)} must be ({k}, {k}).")
    if not (hasattr(guide, "encoder") and (hasattr(guide, "E_loc") or hasattr(guide, "embedding_net"))):
        raise ValueError("Rotating the latent space supports the built-in 'mean_field' and 'correlated' guides; "
                         f"got {type(guide).__name__}.")
    r = rotation.to(model.decoder.inputs[0].weight)
    _rotate_input(model.decoder.inputs[0], r)
    encoder = guide.encoder.net
    _rotate_gaussian_output(encoder.output, r)
    if guide.encoder.use_offset and encoder.inputs[1].in_features == k:
        _rotate_input(encoder.inputs[1], r)
    if hasattr(guide, "E_loc"):
        guide.E_loc.copy_(guide.E_loc @ r)
        variance = (guide.E_log_scale.exp() + 1e-4) ** 2 @ r**2  # diagonal of the rotated covariance
        guide.E_log_scale.copy_(torch.log((variance.sqrt() - 1e-4).clamp_min(1e-6)))
    else:
        _rotate_gaussian_output(guide.embedding_net.output, r)


def _rotate_input(layer: nn.Linear, r: Tensor) -> None:
    """A layer reading z reads z' = z R: W -> W R. weight : (H, K)."""
    layer.weight.copy_(layer.weight @ r)


def _rotate_gaussian_output(layer: nn.Linear, r: Tensor) -> None:
    """An output [loc, log var] (2K) in the rotated basis: loc -> loc R, log var -> log var @ R**2."""
    k = r.shape[0]
    for block, matrix in ((slice(0, k), r), (slice(k, 2 * k), r**2)):
        layer.weight[block].copy_(matrix.T @ layer.weight[block])
        layer.bias[block].copy_(layer.bias[block] @ matrix)
