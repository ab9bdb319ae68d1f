"""build_perturbation_data(vocabulary="train" | "all"): which cells define the columns of D."""

import numpy as np
import pytest

from samsvae_pyro import SAMSVAE
from samsvae_pyro.data import build_perturbation_data

LABELS = ["control", "A", "B", "A+B", "control", "A", "B+C", "C", "A+C"]
SPLIT = ["train", "train", "train", "train", "val", "val", "test", "test", "excluded"]


def build(adata, **kwargs):
    return build_perturbation_data(adata, perturbation_key="perturbation", split_key="split", **kwargs)


def test_default_keeps_training_columns_and_names_the_all_option(make_adata):
    adata = make_adata(LABELS, split=SPLIT)
    with pytest.raises(ValueError, match=r"'B\+C'.*vocabulary='all'"):
        build(adata, encoding="unique")
    with pytest.raises(ValueError, match=r"'C'.*vocabulary='all'"):
        build(adata, encoding="sum")


@pytest.mark.parametrize("encoding, columns", [("unique", ("A", "A+B", "B", "B+C", "C")), ("sum", ("A", "B", "C"))])
def test_all_gives_held_out_conditions_untrained_columns(make_adata, encoding, columns):
    data = build(make_adata(LABELS, split=SPLIT), encoding=encoding, vocabulary="all")
    assert data.vocabulary.perturbations == columns  # "A+C" is only in excluded cells
    held_out = [columns.index(name) for name in ("B+C", "C") if name in columns]
    assert (data.cells_per_perturbation("train")[held_out] == 0).all()
    row = data.dosages[LABELS.index("B+C")].toarray().ravel()
    expected = [name in (("B+C",) if encoding == "unique" else ("B", "C")) for name in columns]
    np.testing.assert_array_equal(row, np.array(expected, dtype=np.float32))


def test_unknown_vocabulary_scope_is_a_clear_error(make_adata):
    with pytest.raises(ValueError, match=r"vocabulary='everything' is not one of \('train', 'all'\)"):
        build(make_adata(LABELS, split=SPLIT), vocabulary="everything")


def test_setup_anndata_registers_the_scope_for_models_and_reloading(make_adata, tmp_path):
    adata = make_adata(LABELS * 4, split=SPLIT * 4)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", split_key="split", encoding="unique",
                          vocabulary="all")
    assert adata.uns["_samsvae_setup"]["vocabulary"] == "all"
    model = SAMSVAE(adata, n_latent=2, n_hidden=4, device="cpu")
    assert "B+C" in model.data.vocabulary.perturbations
    ate = model.model_ate(["B+C"], n_global_draws=2, samples_per_draw=2)
    assert ate.shape == (1, 5) and not ate.obs["in_train"].iloc[0]
    model.save(tmp_path / "m")
    assert SAMSVAE.load(tmp_path / "m", adata, device="cpu").data.vocabulary == model.data.vocabulary
