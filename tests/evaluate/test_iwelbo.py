import math

import pyro
import torch
from pyro import distributions as dist
from pyro.nn import PyroModule

from samsvae_pyro.evaluate.iwelbo import iwelbo
from samsvae_pyro.models import SAMSVAEModel
from samsvae_pyro.models.plates import E, MASK, Z_BASAL, cells_plate, perturbations_plate

G, T, K, SIGMA = 5, 2, 2, 0.7


def linear_gaussian_model():
    """SAMS-VAE with a linear decoder and a constant noise variance: x = A z + c + N(0, sigma^2 I)."""
    torch.manual_seed(0)
    model = SAMSVAEModel(G, T, K, likelihood="normal", activation="identity", n_hidden=3)
    with torch.no_grad():
        model.decoder.output.weight[G:] = 0.0
        model.decoder.output.bias[G:] = math.log(SIGMA**2 - 1e-4)
    w_in, b_in = model.decoder.inputs[0].weight, model.decoder.inputs[0].bias
    w_out, b_out = model.decoder.output.weight[:G], model.decoder.output.bias[:G]
    return model, (w_out @ w_in).detach(), (w_out @ b_in + b_out).detach()


class ExactGuide(PyroModule):
    """Point-mass globals and the exact Gaussian posterior of z_basal (or the prior when ``exact=False``)."""

    def __init__(self, A, c, E0, exact=True):
        super().__init__()
        self.A, self.c, self.E0, self.exact = A, c, E0, exact

    def forward(self, batch):
        with perturbations_plate(T):
            mask = pyro.sample(MASK, dist.Delta(torch.ones(T, K)).to_event(1))
            effects = pyro.sample(E, dist.Delta(self.E0).to_event(1))
        residual = batch["x"] - (batch["D"] @ (effects * mask)) @ self.A.T - self.c  # (..., B, G)
        precision = torch.eye(K) + self.A.T @ self.A / SIGMA**2
        cov = torch.linalg.inv(precision)
        loc = residual @ self.A @ cov.T / SIGMA**2
        if not self.exact:
            loc, cov = torch.zeros_like(loc), torch.eye(K)
        with cells_plate(batch):
            pyro.sample(Z_BASAL, dist.MultivariateNormal(loc, cov))


def data(n=40):
    torch.manual_seed(1)
    D = torch.zeros(n, T)
    D[: n // 2, 0] = 1.0
    D[n // 4: n // 2, 1] = 1.0
    x = torch.randn(n, G) * 2
    return {"x": x, "D": D, "library": torch.ones(n), "index": torch.arange(n), "n_cells": n}


def test_iwelbo_equals_the_exact_log_marginal_on_a_linear_gaussian_model():
    model, A, c = linear_gaussian_model()
    E0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]])
    batch = data()
    values = iwelbo(model, ExactGuide(A, c, E0), [batch], n_particles=3)
    mean = (batch["D"] @ E0) @ A.T + c
    exact = dist.MultivariateNormal(mean, A @ A.T + SIGMA**2 * torch.eye(G)).log_prob(batch["x"])
    torch.testing.assert_close(values, exact, rtol=1e-4, atol=1e-4)


def test_iwelbo_increases_with_the_number_of_particles():
    model, A, c = linear_gaussian_model()
    guide = ExactGuide(A, c, torch.zeros(T, K), exact=False)  # the prior as proposal: a loose bound
    batch = data(200)
    means = []
    for particles in (1, 10, 100):
        pyro.set_rng_seed(0)
        means.append(iwelbo(model, guide, [batch], n_particles=particles).mean().item())
    assert means[0] < means[1] < means[2]
    exact = iwelbo(model, ExactGuide(A, c, torch.zeros(T, K)), [batch], n_particles=1).mean().item()
    assert means[2] <= exact + 1e-3


def test_iwelbo_does_not_depend_on_the_batch_size():
    model, A, c = linear_gaussian_model()
    guide = ExactGuide(A, c, torch.tensor([[1.0, -0.5], [0.3, 2.0]]))
    batch = data(40)
    whole = iwelbo(model, guide, [batch], n_particles=3)
    halves = [{**batch, **{k: batch[k][rows] for k in ("x", "D", "library", "index")}}
              for rows in (slice(0, 20), slice(20, 40))]
    torch.testing.assert_close(iwelbo(model, guide, halves, n_particles=3), whole, rtol=1e-4, atol=1e-4)
