"""The comparison families' generative programs: documented plate tables and their latent structure."""

import pytest
import torch
from pyro.poutine.util import site_is_subsample

from samsvae_pyro.models import CPAVAEModel, ConditionalVAEModel, SVAEPlusModel, plates
from samsvae_pyro.models.plates import E, MASK, MASK_PROB, X, Z_BASAL
from tests.models.plate_tables import plate_table, traced

G, T, K, S = 12, 5, 3, 4
FAMILIES = {"cpa": CPAVAEModel, "conditional": ConditionalVAEModel, "svae_plus": SVAEPlusModel}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_trace_matches_the_documented_plate_table(batch, name):
    model = FAMILIES[name](G, T, K, n_hidden=8)
    trace = traced(model, batch, S)
    table = plate_table(FAMILIES[name])
    latent = {n for n, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)}
    assert set(table) == latent and X in table and Z_BASAL in table
    for site, (plate, dim, letter) in table.items():
        node = trace.nodes[site]
        assert {f.name: f.dim for f in node["cond_indep_stack"]}[plate] == dim
        assert node["fn"].event_shape == ({"K": K, "G": G}[letter],)
        assert node["fn"].batch_shape == (S, len(batch["index"]) if plate == plates.CELLS else T)


def test_cpa_vae_is_sams_vae_without_a_mask(batch):
    trace = traced(CPAVAEModel(G, T, K, n_hidden=8), batch, S)
    assert MASK not in trace.nodes
    z, values = trace.nodes["_RETURN"]["value"], {k: trace.nodes[k]["value"] for k in (Z_BASAL, E)}
    torch.testing.assert_close(z, values[Z_BASAL] + batch["D"] @ values[E])


def test_svae_plus_shifts_by_the_masked_parameter_under_a_beta_prior(batch):
    model = SVAEPlusModel(G, T, K, n_hidden=8, beta=10.0)
    with torch.no_grad():
        model.shift.normal_()
    trace = traced(model, batch, S)
    assert E not in trace.nodes
    prior = trace.nodes[MASK_PROB]["fn"].base_dist
    assert torch.allclose(prior.concentration1, torch.tensor(1.0))
    assert torch.allclose(prior.concentration0, torch.tensor(10.0))
    mask, z_basal = trace.nodes[MASK]["value"], trace.nodes[Z_BASAL]["value"]
    torch.testing.assert_close(trace.nodes["_RETURN"]["value"], z_basal + batch["D"] @ (mask * model.shift))
    controls = batch["D"].sum(-1) == 0
    torch.testing.assert_close(trace.nodes["_RETURN"]["value"][:, controls], z_basal[:, controls])


def test_conditional_vae_decoder_reads_the_dosages(batch):
    model = ConditionalVAEModel(G, T, K, n_hidden=8)
    trace = traced(model, batch, S)
    z = trace.nodes[Z_BASAL]["value"]
    assert torch.equal(trace.nodes["_RETURN"]["value"], z)
    other = torch.roll(batch["D"], 1, dims=-1)
    same = model.observation(z, batch["D"], batch["library"]).mean
    assert not torch.allclose(same, model.observation(z, other, batch["library"]).mean)


@pytest.mark.parametrize("make, message", [
    (lambda: SVAEPlusModel(G, T, K, beta=0.0), "beta must be positive"),
    (lambda: ConditionalVAEModel(G, T, 0), "n_latent"),
    (lambda: CPAVAEModel(G, T, K, likelihood="zinb"), "likelihood"),
])
def test_bad_arguments_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
