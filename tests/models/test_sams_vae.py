from typing import get_args

import pytest
import torch
from pyro import poutine

from samsvae_pyro._typing import MaskPrior
from samsvae_pyro.models import SAMSVAEModel, plates
from tests.models.plate_tables import plate_table, traced


@pytest.mark.parametrize("mask_prior", get_args(MaskPrior))
def test_trace_matches_the_documented_plate_table(batch, mask_prior):
    B, G = batch["x"].shape
    T, K, S = batch["D"].shape[1], 3, 4
    sizes = {"K": K, "G": G}
    model = SAMSVAEModel(G, T, K, n_hidden=8, mask_prior=mask_prior)
    trace = traced(model, batch, S)
    table = plate_table(SAMSVAEModel)
    assert set(table) == {"E", "mask", "mask_prob", "z_basal", "x"}
    for site, (plate, dim, letter) in table.items():
        if site not in trace.nodes:
            assert site == "mask_prob" and mask_prior == "bernoulli"
            continue
        node = trace.nodes[site]
        frames = {f.name: f.dim for f in node["cond_indep_stack"]}
        assert frames[plate] == dim
        assert node["fn"].event_shape == (sizes[letter],)
        plate_size = B if plate == plates.CELLS else T
        assert node["fn"].batch_shape == (S, plate_size)


def test_model_samples_x_when_unobserved(batch):
    model = SAMSVAEModel(12, 5, 3, n_hidden=8)
    trace = poutine.trace(model).get_trace({**batch, "x": None})
    x = trace.nodes["x"]["value"]
    assert x.shape == batch["D"].shape[:1] + (12,)
    assert torch.equal(x, x.round()) and (x >= 0).all()


def test_z_is_basal_plus_sparse_additive_offset(batch):
    model = SAMSVAEModel(12, 5, 3, n_hidden=8)
    trace = poutine.trace(model).get_trace(batch)
    value = {k: trace.nodes[k]["value"] for k in ("z_basal", "E", "mask")}
    z = trace.nodes["_RETURN"]["value"]
    assert torch.allclose(z, value["z_basal"] + batch["D"] @ (value["E"] * value["mask"]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_latent=0), "n_latent"), (dict(likelihood="gaussian"), "likelihood"),
    (dict(mask_prior="spike"), "mask_prior"), (dict(mask_prior_prob=1.5), "mask_prior_prob"),
    (dict(activation="tanhh"), "activation"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    args = dict(n_genes=4, n_perturbations=2, n_latent=2) | kwargs
    with pytest.raises(ValueError, match=message):
        SAMSVAEModel(**args)


def test_embedding_prior_scale_is_fixed_or_learned():
    fixed = SAMSVAEModel(5, 3, 2, embedding_prior_scale=2.0)
    assert float(fixed.embedding_prior_scale) == pytest.approx(2.0)
    assert "embedding_prior_log_scale" not in dict(fixed.named_parameters())
    learned = SAMSVAEModel(5, 3, 2, embedding_prior_scale=2.0, learn_embedding_prior_scale=True)
    assert dict(learned.named_parameters())["embedding_prior_log_scale"].requires_grad
    assert float(learned.embedding_prior().base_dist.scale.mean().detach()) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="embedding_prior_scale"):
        SAMSVAEModel(5, 3, 2, embedding_prior_scale=0.0)
