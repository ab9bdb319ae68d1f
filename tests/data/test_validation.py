"""Every bad input is a ValueError naming the problem (and the fix), raised before building."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.data import build_perturbation_data

LABELS = ["control", "A", "B", "A+B"] * 3


def _build(adata, **kwargs):
    return build_perturbation_data(adata, **{"perturbation_key": "perturbation", **kwargs})


def test_missing_obs_column_lists_available(make_adata):
    with pytest.raises(
        ValueError, match=r"perturbation_key='condition' is not an obs column.*'perturbation'"
    ):
        _build(make_adata(LABELS), perturbation_key="condition")


def test_missing_split_column(make_adata):
    with pytest.raises(ValueError, match="split_key='fold'"):
        _build(make_adata(LABELS), split_key="fold")


def test_missing_layer_lists_available(make_adata):
    adata = make_adata(LABELS)
    adata.layers["raw"] = adata.X.copy()
    with pytest.raises(ValueError, match=r"layer='counts' is not in adata.layers.*'raw'"):
        _build(adata, layer="counts")


def test_exactly_one_label_source(make_adata):
    with pytest.raises(ValueError, match="exactly one label source"):
        build_perturbation_data(make_adata(LABELS))
    with pytest.raises(ValueError, match="exactly one label source"):
        _build(make_adata(LABELS), dosage_columns="guide_")


def test_no_control_cells_names_label_and_shows_labels(make_adata):
    with pytest.raises(ValueError, match=r"No control cells.*'ctrl'.*'A'") as info:
        _build(make_adata(LABELS), control_label="ctrl")
    assert "control_label" in str(info.value)


def test_no_control_cells_with_pattern(make_adata):
    with pytest.raises(ValueError, match="containing 'non-targeting'"):
        _build(make_adata(["x", "A", "B"] * 4), control_pattern="non-targeting")


@pytest.mark.parametrize(
    ("bad", "message"), [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")]
)
@pytest.mark.parametrize("sparse", [True, False])
def test_non_finite_values(make_adata, bad, message, sparse):
    counts = np.ones((len(LABELS), 3))
    counts[2, 1] = bad
    with pytest.raises(ValueError, match=message):
        _build(make_adata(LABELS, counts=counts, sparse=sparse))


@pytest.mark.parametrize("sparse", [True, False])
def test_negative_values(make_adata, sparse):
    counts = np.ones((len(LABELS), 3))
    counts[0, 0] = -2
    with pytest.raises(ValueError, match="negative values.*raw counts"):
        _build(make_adata(LABELS, counts=counts, sparse=sparse))


@pytest.mark.parametrize("sparse", [True, False])
def test_non_integer_values_when_count_data(make_adata, sparse):
    counts = np.ones((len(LABELS), 3))
    counts[4, 2] = 0.5
    adata = make_adata(LABELS, counts=counts, sparse=sparse)
    with pytest.raises(ValueError, match=r"non-integer.*likelihood='normal'"):
        _build(adata)
    assert _build(adata, count_data=False).n_cells == len(LABELS)


def test_duplicate_gene_names(make_adata):
    adata = make_adata(LABELS)
    adata.var_names = ["g0", "g1", "g1", "g3", "g4"]
    with pytest.raises(ValueError, match=r"Duplicate gene names.*'g1'.*var_names_make_unique"):
        _build(adata)


def test_duplicate_cell_names(make_adata):
    adata = make_adata(LABELS)
    adata.obs_names = ["c0"] * len(LABELS)
    with pytest.raises(ValueError, match=r"Duplicate cell names.*obs_names_make_unique"):
        _build(adata)


def test_zero_cells_or_genes(make_adata):
    adata = make_adata(LABELS)
    for empty in (adata[:0].copy(), adata[:, :0].copy()):
        with pytest.raises(ValueError, match="both must be positive"):
            _build(empty)


def test_nan_labels(make_adata):
    adata = make_adata(LABELS)
    adata.obs.loc["c1", "perturbation"] = np.nan
    with pytest.raises(ValueError, match=r"1 missing \(NaN\) labels.*'c1'"):
        _build(adata)


def test_bad_split_values_list_allowed(make_adata):
    adata = make_adata(LABELS, split=["train", "validation", "test"] * 4)
    with pytest.raises(ValueError, match=r"'validation'.*allowed splits.*'val'"):
        _build(adata, split_key="split")


def test_empty_training_split(make_adata):
    adata = make_adata(LABELS, split=["val", "test"] * 6)
    with pytest.raises(ValueError, match="'train' split is empty"):
        _build(adata, split_key="split")


def test_unseen_perturbation_in_held_out_split(make_adata):
    labels = ["control", "A", "B", "control", "C"]
    adata = make_adata(labels, split=["train", "train", "train", "val", "test"])
    with pytest.raises(ValueError, match=r"Condition\(s\) 'C'.*training split") as info:
        _build(adata, split_key="split")
    assert "unknown to the vocabulary" in str(info.value)


def test_unique_encoding_unseen_combination_suggests_sum(make_adata):
    labels = ["control", "A", "B", "A+B"]
    adata = make_adata(labels, split=["train", "train", "train", "test"])
    with pytest.raises(ValueError, match=r"'A\+B'.*encoding='sum'"):
        _build(adata, split_key="split", encoding="unique")
    assert _build(adata, split_key="split", encoding="sum").dosages[3].nnz == 2


def test_reference_gene_mismatch_lists_missing(sim_counts):
    nt = {"perturbation_key": "perturbation", "control_label": "non-targeting"}
    train = build_perturbation_data(sim_counts, **nt)
    with pytest.raises(ValueError, match=r"2 gene\(s\) of the reference are missing.*'gene_00'"):
        build_perturbation_data(sim_counts[:, 2:].copy(), **nt, reference=train)


def test_bad_dosage_columns(make_adata):
    adata = make_adata(LABELS)
    adata.obs["guide_A"] = [0, 1, 2, 1] * 3
    with pytest.raises(ValueError, match=r"obs\['guide_A'\] has values other than 0/1"):
        build_perturbation_data(adata, dosage_columns="guide_")
    with pytest.raises(ValueError, match="No numeric obs column starts with dosage_columns='sg_'"):
        build_perturbation_data(adata, dosage_columns="sg_")
    with pytest.raises(ValueError, match="dosage_columns='guide_Z'"):
        build_perturbation_data(adata, dosage_columns=["guide_Z"])


def test_bad_encoding(make_adata):
    with pytest.raises(ValueError, match="encoding='onehot'"):
        _build(make_adata(LABELS), encoding="onehot")


def test_validation_does_not_touch_input(make_adata):
    counts = np.ones((len(LABELS), 3))
    counts[0, 0] = -1
    adata = make_adata(LABELS, counts=counts)
    with pytest.raises(ValueError):
        _build(adata)
    assert adata.X[0, 0] == -1
    assert list(adata.obs.columns) == ["perturbation"]
