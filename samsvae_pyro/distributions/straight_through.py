"""Straight-through relaxed Bernoulli (docs/model.md, section 2).

The forward value is a hard 0/1 sample; gradients flow through the relaxed (Concrete) sample of the
same noise; the density is the exact Bernoulli log-probability of the hard value, so the ELBO scores
the discrete mask, not a relaxation of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import Bernoulli, TorchDistribution
from torch import Tensor
from torch.distributions import constraints, register_kl
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions.utils import broadcast_all


class _HardThreshold(torch.autograd.Function):
    """Forward: 1[soft > 0.5], exactly 0/1. Backward: identity (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, soft: Tensor) -> Tensor:  # noqa: D102
        return (soft > 0.5).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


class StraightThroughBernoulli(TorchDistribution):
    """Bernoulli(sigmoid(logits)) sampled with the straight-through Gumbel-sigmoid estimator.

    Parameters
    ----------
    logits
        Log-odds of a one.
    temperature
        Temperature of the relaxed sample that carries the gradient (paper: 1.0).
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.boolean
    has_rsample = True

    def __init__(self, logits: Tensor, temperature: float | Tensor = 1.0, validate_args=None):
        (self.logits,) = broadcast_all(logits)
        self.temperature = temperature
        super().__init__(self.logits.shape, torch.Size(), validate_args=validate_args)

    @property
    def probs(self) -> Tensor:
        return torch.sigmoid(self.logits)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)

    def expand(self, batch_shape, _instance=None):
        return StraightThroughBernoulli(self.logits.expand(batch_shape), self.temperature)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.finfo(self.logits.dtype).tiny
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device).clamp(eps, 1 - 1e-7)
        soft = torch.sigmoid((self.logits + torch.log(u) - torch.log1p(-u)) / self.temperature)
        return _HardThreshold.apply(soft)

    def log_prob(self, value: Tensor) -> Tensor:
        logits, value = broadcast_all(self.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")

    def entropy(self) -> Tensor:
        return Bernoulli(logits=self.logits).entropy()


@register_kl(StraightThroughBernoulli, TorchBernoulli)
def _kl_straight_through_bernoulli(q: StraightThroughBernoulli, p: TorchBernoulli) -> Tensor:
    """KL(q || p) of the two Bernoulli laws (the relaxation only shapes gradients of samples)."""
    return torch.distributions.kl_divergence(TorchBernoulli(logits=q.logits), p)
