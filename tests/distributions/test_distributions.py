import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, NegativeBinomial, Poisson, kl_divergence

from samsvae_pyro.distributions import LibraryNegativeBinomial, StraightThroughBernoulli


def test_straight_through_samples_are_exactly_binary_and_carry_gradients():
    logits = torch.randn(7, 5, requires_grad=True)
    d = StraightThroughBernoulli(logits, temperature=0.5)
    sample = d.expand((3, 7, 5)).rsample((4,))
    assert sample.shape == (4, 3, 7, 5)
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_straight_through_frequency_matches_probability():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.5])
    freq = StraightThroughBernoulli(logits).rsample((20000,)).mean(0)
    assert torch.allclose(freq, torch.sigmoid(logits), atol=0.02)


def test_straight_through_density_is_the_bernoulli_density_of_the_hard_sample():
    logits = torch.randn(10)
    value = (torch.rand(10) > 0.5).float()
    expected = Bernoulli(logits=logits).log_prob(value)
    assert torch.allclose(StraightThroughBernoulli(logits, 0.3).log_prob(value), expected)


def test_straight_through_kl_to_bernoulli_is_registered_and_exact():
    q, p = StraightThroughBernoulli(torch.tensor([0.3, -1.0])), Bernoulli(probs=torch.tensor([0.01, 0.2]))
    assert torch.allclose(kl_divergence(q, p), kl_divergence(Bernoulli(logits=q.logits), p))


@pytest.mark.parametrize("particles", [(), (4,)])
def test_library_negative_binomial_matches_torch(particles):
    torch.manual_seed(0)
    B, G = 6, 9
    logits = torch.randn(*particles, B, G)
    library = torch.rand(B) * 100 + 10
    log_theta = torch.randn(G)
    x = torch.poisson(torch.rand(B, G) * 8)
    ours = LibraryNegativeBinomial(logits, library, log_theta).log_prob(x)
    mu = torch.softmax(logits, -1) * library[:, None]
    ref = NegativeBinomial(total_count=log_theta.exp(), logits=mu.log() - log_theta).log_prob(x).sum(-1)
    assert ours.shape == (*particles, B)
    assert torch.allclose(ours, ref, atol=1e-3, rtol=1e-5)


def test_library_poisson_limit_matches_torch():
    logits, library = torch.randn(3, 5), torch.tensor([10.0, 20.0, 30.0])
    x = torch.tensor([[0.0, 1, 2, 3, 4]] * 3)
    ours = LibraryNegativeBinomial(logits, library, None).log_prob(x)
    ref = Poisson(torch.softmax(logits, -1) * library[:, None]).log_prob(x).sum(-1)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_library_negative_binomial_samples_have_the_right_mean():
    torch.manual_seed(1)
    logits, library = torch.zeros(1, 4), torch.tensor([400.0])
    d = LibraryNegativeBinomial(logits, library, torch.zeros(4))
    samples = d.sample((20000,))
    assert samples.shape == (20000, 1, 4)
    assert torch.allclose(samples.mean(0), torch.full((1, 4), 100.0), rtol=0.05)


@pytest.mark.parametrize("threads", [1, 2])
def test_gamma_poisson_has_negative_binomial_moments_and_is_reproducible(threads, monkeypatch):
    from samsvae_pyro.distributions import negative_binomial

    monkeypatch.setattr(negative_binomial, "PARALLEL_MIN_ELEMENTS", 1000)  # exercise the threaded path
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mu = torch.tensor([0.3, 4.0, 60.0]).expand(40000, 3)
        theta = torch.tensor([0.5, 2.0, 10.0])
        torch.manual_seed(0)
        x = negative_binomial.gamma_poisson(mu, theta)
        torch.manual_seed(0)
        again = negative_binomial.gamma_poisson(mu, theta)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(x, again) and torch.equal(x, x.round()) and (x >= 0).all()
    assert torch.allclose(x.mean(0), mu[0], rtol=0.04)
    assert torch.allclose(x.var(0), mu[0] + mu[0] ** 2 / theta, rtol=0.08)


def test_shared_mixing_keeps_each_cells_negative_binomial_and_shares_the_noise_across_periods():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, -1.0]]).expand(4, 3)  # 2 conditions x 2 replicates, 3 genes
    library = torch.tensor([100.0, 100.0, 300.0, 300.0])
    d = LibraryNegativeBinomial(logits, library, torch.tensor([0.0, 1.0, 2.0]))
    x = torch.stack([d.sample_shared_mixing(period=2) for _ in range(20000)])  # (20000, 4, 3)
    mu, theta = d.mean[0:4], torch.tensor([0.0, 1.0, 2.0]).exp()
    assert torch.allclose(x.mean(0), mu, rtol=0.05)
    assert torch.allclose(x.var(0), mu + mu**2 / theta, rtol=0.1)
    shared = torch.corrcoef(torch.stack([x[:, 0, 0], x[:, 2, 0]]))[0, 1]  # replicate 0 under both conditions
    independent = torch.corrcoef(torch.stack([x[:, 0, 0], x[:, 1, 0]]))[0, 1]  # two replicates
    assert shared > 0.3 and abs(independent) < 0.05
    with pytest.raises(ValueError, match="period"):
        d.sample_shared_mixing(period=3)


def test_library_negative_binomial_gradients_match_torch():
    torch.manual_seed(2)
    S, B, G = 3, 6, 9
    logits = torch.randn(S, B, G, requires_grad=True)
    log_theta = torch.randn(G, requires_grad=True)
    library = torch.rand(B) * 100 + 10
    x = torch.poisson(torch.rand(B, G) * 8)
    weights = torch.randn(S, B)  # a generic downstream use of the per-cell log-likelihoods
    (LibraryNegativeBinomial(logits, library, log_theta).log_prob(x) * weights).sum().backward()
    ours = logits.grad.clone(), log_theta.grad.clone()
    logits.grad = log_theta.grad = None
    mu = torch.softmax(logits, -1) * library[:, None]
    ref = NegativeBinomial(total_count=log_theta.exp(), logits=mu.log() - log_theta).log_prob(x).sum(-1)
    (ref * weights).sum().backward()
    assert torch.allclose(ours[0], logits.grad, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ours[1], log_theta.grad, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("count", [1e6, 1e7, 2.0**24])
def test_nb_log_prob_in_float32_agrees_with_float64_for_large_counts(count):
    """Issue 17, item 9: two genes, one with a huge count. The former arrangement lost 0.8 nats at 1e6
    and 17 at 1e7 to float32 cancellation; both precisions must now match scipy's float64 value."""
    from scipy.stats import nbinom

    x, mu, theta = np.array([count, 3.0]), np.array([count * 1.02, 4.0]), np.array([5.0, 2.0])
    reference = nbinom.logpmf(x, theta, theta / (theta + mu)).sum()
    for dtype, tolerance in ((torch.float32, 0.01), (torch.float64, 1e-6)):
        nb = LibraryNegativeBinomial(torch.tensor(np.log(mu / mu.sum()), dtype=dtype)[None],
                                     torch.tensor([mu.sum()], dtype=dtype), torch.tensor(np.log(theta), dtype=dtype))
        assert abs(nb.log_prob(torch.tensor(x, dtype=dtype)[None]).item() - reference) < tolerance


def test_log_gamma_ratio_without_a_device_wait_gives_the_same_values():
    """Off the CPU the float64 log-gamma terms are computed everywhere and selected (no ``any()`` wait for the
    device): the values must equal the CPU path's, bit for bit, for small and large counts alike."""
    from samsvae_pyro.distributions.negative_binomial import FLOAT64_FROM, _log_gamma_ratio

    value = torch.tensor([[0.0, 3.0, FLOAT64_FROM, FLOAT64_FROM + 1.0], [1e6, 17.0, 2.0**24, 0.0]])
    theta = torch.tensor([0.3, 2.0, 5.0, 40.0])
    selected, scattered = (_log_gamma_ratio(value, theta, select=s) for s in (True, False))
    assert torch.equal(selected, scattered)
    assert not torch.equal(scattered, torch.lgamma(value + theta) - torch.lgamma(value + 1))  # float64 used
