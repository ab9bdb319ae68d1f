import pyro
import pytest
import torch

from samsvae_pyro.guides import make_guide
from samsvae_pyro.infer import SVITrainer, per_perturbation_weights
from samsvae_pyro.models import SAMSVAEModel
from tests.conftest import make_batch

N, B, T = 24, 6, 3


def subset(batch, rows):
    return {**batch, "x": batch["x"][rows], "D": batch["D"][rows], "library": batch["library"][rows],
            "index": batch["index"][rows]}


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    full = make_batch(B=N, G=8, T=T, n_cells=N, seed=1)
    full["D"][:T] = torch.eye(T)  # every perturbation has cells
    model = SAMSVAEModel(8, T, 2, n_hidden=8, mask_prior_prob=0.3)
    guide = make_guide("mean_field", model, x_mean=torch.zeros(8), x_std=torch.ones(8),
                       input_transform="log1p", n_hidden=8)
    with torch.no_grad():  # move the guide away from the prior so the global KL matters
        guide.E_loc.normal_(0, 2.0)
        guide.mask.logits.normal_(0, 2.0)
    counts = (full["D"] != 0).sum(0).float()
    return full, model, guide, counts


def estimate(problem, weighting, batches, n_particles=4000, repeats=3):
    full, model, guide, counts = problem
    trainer = SVITrainer(model, guide, n_particles=n_particles, weighting=weighting,
                         cells_per_perturbation={"train": counts})
    values = []
    for r in range(repeats):
        pyro.set_rng_seed(r)
        values.append(sum(trainer.loss(b, grad=False) for b in batches) / len(batches))
    return torch.tensor(values)


def test_per_perturbation_weights_sum_to_one_over_an_epoch(problem):
    full, _, _, counts = problem
    batches = [subset(full, torch.arange(i, i + B)) for i in range(0, N, B)]
    total = sum(per_perturbation_weights(b, counts) for b in batches) / len(batches)
    assert torch.allclose(total, torch.ones(T))


@pytest.mark.parametrize("weighting", ["plated", "per_perturbation"])
def test_minibatch_weighting_is_unbiased_for_the_full_data_elbo(problem, weighting):
    full = problem[0]
    exact = estimate(problem, "plated", [full])
    permutation = torch.randperm(N, generator=torch.Generator().manual_seed(5))
    minibatch = estimate(problem, weighting, [subset(full, permutation[i:i + B]) for i in range(0, N, B)])
    spread = (exact.std() + minibatch.std()).item() + 1e-3  # Monte-Carlo error, about 0.01 nats per cell
    # the global KL per cell is about 0.5 nats here, so a weighting that miscounts it fails by far
    assert abs(exact.mean() - minibatch.mean()).item() < 4 * spread
