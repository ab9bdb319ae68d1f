"""Library-size negative binomial over genes (docs/model.md, section 1, likelihood "nb").

x_g ~ NB(mean mu_g = l * softmax(logits)_g, inverse dispersion theta_g). ``log_prob`` splits into a
part that depends only on (x, theta), computed once per cell, and a part that depends on the decoder
output, computed per particle: this is what keeps particle-vectorised training cheap.

Precision: the terms are arranged so that none cancels against another (a count of 10^7 in one gene
used to lose 17 nats to float32 rounding), and log Gamma(x + theta) - log Gamma(x + 1), whose two
halves grow like x log x, is computed in float64 for counts above :data:`FLOAT64_FROM` (float32 loses
about 0.7 nats there at 10^6). Counts above 2^24 cannot be stored exactly in float32 at all; the data
layer rejects them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch import Tensor
from torch.distributions import constraints


FLOAT64_FROM = 4096  # counts above this get float64 log-gamma terms (float32 error < 0.005 nats below it)


class LibraryNegativeBinomial(TorchDistribution):
    """Negative binomial counts with mean ``library * softmax(logits)`` and gene-wise dispersion.

    Parameters
    ----------
    logits
        Unnormalised log gene proportions.
    library
        Library size l of each cell.
    log_theta
        Log inverse dispersion phi_g (theta_g = exp(phi_g)); ``None`` gives the Poisson limit.

    Shapes
    ------
    logits : (..., B, G); library : (B,); log_theta : (G,); batch shape (..., B), event shape (G,).
    """

    arg_constraints = {}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, logits: Tensor, library: Tensor, log_theta: Tensor | None, validate_args=None):
        self.logits, self.library, self.log_theta = logits, library, log_theta
        batch_shape = torch.broadcast_shapes(logits.shape[:-1], library.shape)
        super().__init__(batch_shape, logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        # The library is left to broadcast: expanded over particles (as Pyro's plates ask for), it
        # would turn the once-per-cell terms of log_prob into (S, B, G) work.
        batch_shape = torch.Size(batch_shape)
        return LibraryNegativeBinomial(self.logits.expand(batch_shape + self.event_shape), self.library,
                                       self.log_theta)

    @property
    def log_mean(self) -> Tensor:
        return F.log_softmax(self.logits, -1) + self.library.log().unsqueeze(-1)

    @property
    def mean(self) -> Tensor:
        return self.log_mean.exp()

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Sum over genes of log NB(x_g; mu_g, theta_g), arranged so that few (..., B, G) tensors are built.

        With log mu = log rho + log l, rho = softmax(logits), c = log l - log theta and L = log rho + c
        = log(mu / theta):

        .. math::
            \log NB = \underbrace{-(x + \theta)\,\mathrm{softplus}(-L) - \theta \log\rho}_{\text{per particle}}
            \underbrace{- \theta c + \log\Gamma(x + \theta) - \log\Gamma(x + 1)}_{\text{per cell}}
            - \underbrace{\log\Gamma(\theta)}_{\text{per gene}},

        from theta log(theta / (theta + mu)) + x log(mu / (theta + mu)) with log(1 + theta / mu) =
        softplus(-L). Per particle, only log rho, L and its softplus are built at (..., B, G) (and two
        products reduced over genes); no term grows with x except through softplus(-L), which is small
        when mu is near x, so nothing cancels in float32. The terms that depend on the data and theta
        alone are computed once per cell, the log-gamma difference in float64 for large counts.
        """
        log_rho = F.log_softmax(self.logits, -1)  # (..., B, G)
        log_library = self.library.log().unsqueeze(-1)  # (B, 1)
        if self.log_theta is None:  # Poisson: x log mu - mu - log x!
            log_mu = log_rho + log_library
            return (value * log_mu - log_mu.exp()).sum(-1) - torch.lgamma(value + 1).sum(-1)
        theta = self.log_theta.exp()
        c = log_library - self.log_theta  # (B, G)
        per_particle = -((value + theta) * F.softplus(-c - log_rho)).sum(-1) - log_rho @ theta
        per_cell = (_log_gamma_ratio(value, theta) - theta * c).sum(-1)  # (B,)
        per_gene = -torch.lgamma(theta).sum(-1)  # ()
        return per_particle + per_cell + per_gene

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            mu = self.mean.expand(self._extended_shape(sample_shape))
            theta = None if self.log_theta is None else self.log_theta.exp()
            return gamma_poisson(mu, theta)

    def sample_shared_mixing(self, period: int) -> Tensor:
        """Counts whose Gamma mixing variable repeats every ``period`` cells (common random numbers).

        x_ig = Poisson(mu_ig * w_(i mod period) g), w ~ Gamma(theta, theta): each cell keeps exactly its NB
        (or, without theta, Poisson) distribution; cells ``period`` apart share w, e.g. the same replicate under
        different conditions. Shapes: cells on dim -2, a multiple of ``period``; returns the batch + event shape.
        """
        with torch.no_grad():
            mu = self.mean.expand(self._extended_shape())
            if self.log_theta is None:
                return gamma_poisson(mu, None)
            if mu.shape[-2] % period:
                raise ValueError(f"{mu.shape[-2]} cells are not a whole number of periods of {period}.")
            theta = self.log_theta.exp()
            shape = mu.shape[:-2] + (period, mu.shape[-1])
            mixing = torch._standard_gamma(theta.expand(shape).contiguous()) / theta  # (..., period, G), mean 1
            return gamma_poisson(mu * mixing.repeat(*([1] * (mu.dim() - 2)), mu.shape[-2] // period, 1), None)


def _log_gamma_ratio(value: Tensor, theta: Tensor, *, select: bool | None = None) -> Tensor:
    """log Gamma(x + theta) - log Gamma(x + 1), in float64 where x > :data:`FLOAT64_FROM`.

    On CPU the float64 terms are computed only where needed. With ``select`` (default: on other
    devices) they are computed for every entry and selected, because asking whether any count is large
    would wait for the device; the values are the same either way.

    Shapes: value (B, G); theta (G,); returns (B, G).
    """
    out = torch.lgamma(value + theta) - torch.lgamma(value + 1)
    large = value > FLOAT64_FROM
    if select is None:
        select = value.device.type != "cpu"
    if select:
        x, t = value.double(), theta.double()
        return torch.where(large, (torch.lgamma(x + t) - torch.lgamma(x + 1)).to(out.dtype), out)
    if large.any():
        x = value[large].double()
        t = theta.expand_as(value)[large].double()
        out = out.masked_scatter(large, (torch.lgamma(x + t) - torch.lgamma(x + 1)).to(out.dtype))
    return out


PARALLEL_MIN_ELEMENTS = 1 << 20


def gamma_poisson(mu: Tensor, theta: Tensor | None) -> Tensor:
    """x ~ Poisson(Gamma(theta, theta / mu)) (NB with mean mu, inverse dispersion theta), or Poisson(mu).

    PyTorch's CPU Gamma and Poisson samplers run on one core; for large CPU tensors the draws are split
    over ``torch.get_num_threads()`` threads, each with its own generator seeded from the global
    stream (so a seeded run stays reproducible for a given thread count).

    Shapes: mu (..., G); theta (G,) or None; returns (..., G).
    """
    n_threads = torch.get_num_threads()
    if mu.device.type != "cpu" or n_threads == 1 or mu.numel() < PARALLEL_MIN_ELEMENTS:
        return _gamma_poisson(mu, theta, None)
    flat_mu = mu.reshape(-1)
    flat_theta = None if theta is None else theta.expand_as(mu).reshape(-1)
    out = torch.empty_like(flat_mu)
    seeds = torch.randint(0, 2**62, (n_threads,)).tolist()
    bounds = [len(flat_mu) * i // n_threads for i in range(n_threads + 1)]

    def draw(i: int) -> None:
        rows = slice(bounds[i], bounds[i + 1])
        generator = torch.Generator().manual_seed(seeds[i])
        out[rows] = _gamma_poisson(flat_mu[rows], None if flat_theta is None else flat_theta[rows], generator)

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(draw, range(n_threads)))
    return out.reshape(mu.shape)


def _gamma_poisson(mu: Tensor, theta: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if theta is None:
        return torch.poisson(mu, generator=generator)
    theta = theta.expand_as(mu)
    rate = torch._standard_gamma(theta, generator=generator) * (mu / theta)  # Gamma(theta, theta / mu)
    return torch.poisson(rate, generator=generator)
