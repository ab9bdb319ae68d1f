"""Label parsing and the perturbation vocabulary (both encodings)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samsvae_pyro.data import PerturbationVocabulary, parse_label


@pytest.mark.parametrize(
    ("label", "kwargs", "members"),
    [
        ("A", {}, ("A",)),
        ("B+A", {}, ("A", "B")),
        ("A+B", {}, ("A", "B")),
        ("C+A+B", {}, ("A", "B", "C")),
        (" A + B ", {}, ("A", "B")),
        ("A+A", {}, ("A",)),
        ("B_A", {"delimiter": "_"}, ("A", "B")),
        ("A+B", {"delimiter": "_"}, ("A+B",)),
        ("control", {}, ()),
        (" control ", {}, ()),
        ("ctrl", {"control_label": "ctrl"}, ()),
        ("A+ctrl", {"control_label": "ctrl"}, ("A",)),
        ("non-targeting_03", {"control_pattern": "non-targeting"}, ()),
        ("X_+_1.2|X_-_3.4", {"delimiter": None}, ("X_+_1.2|X_-_3.4",)),
    ],
)
def test_parse_label(label, kwargs, members):
    assert parse_label(label, **kwargs) == members


@pytest.mark.parametrize("label", ["A++B", "+A", "A+", ""])
def test_parse_label_rejects_empty_member(label):
    with pytest.raises(ValueError, match="empty member") as info:
        parse_label(label)
    assert repr(label) in str(info.value)


def _vocab(encoding, members=(("A",), ("B",), ("A", "B"), ("A", "C"), ())):
    return PerturbationVocabulary.from_members(
        list(members),
        control_label="control",
        delimiter="+",
        encoding=encoding,
        control_pattern=None,
    )


def test_sum_encoding_columns_and_dosages():
    vocab = _vocab("sum")
    assert vocab.perturbations == ("A", "B", "C")
    dense = vocab.encode([(), ("A",), ("B", "A"), ("A", "B", "C")]).toarray()
    np.testing.assert_array_equal(dense, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])
    assert dense.dtype == np.float32


def test_unique_encoding_columns_and_dosages():
    vocab = _vocab("unique")
    assert vocab.perturbations == ("A", "A+B", "A+C", "B")
    dense = vocab.encode([(), ("B", "A"), ("A",)]).toarray()
    np.testing.assert_array_equal(dense, [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    assert vocab.members_of_column(1) == ("A", "B")


def test_encode_labels_parses_reordered_members():
    vocab = _vocab("sum")
    np.testing.assert_array_equal(
        vocab.encode_labels(["B+A", "A+B", "control"]).toarray(), [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    )


@pytest.mark.parametrize(("encoding", "unknown"), [("sum", "'D'"), ("unique", "'B+C'")])
def test_unknown_members_are_named(encoding, unknown):
    vocab = _vocab(encoding)
    members = [("D",)] if encoding == "sum" else [("C", "B")]
    with pytest.raises(ValueError, match="training data") as info:
        vocab.encode(members)
    assert unknown in str(info.value)


def test_unknown_error_lists_only_the_first_few():
    vocab = _vocab("sum")
    with pytest.raises(ValueError, match=r"and 2 more"):
        vocab.encode([(f"X{i}",) for i in range(7)])


def test_sum_combination_of_seen_singles_needs_no_column():
    vocab = _vocab("sum", members=[("A",), ("B",)])
    assert vocab.unknown([("A", "B")]) == []
    assert vocab.encode([("A", "B")]).toarray().tolist() == [[1.0, 1.0]]


def test_canonical_and_round_trip():
    vocab = PerturbationVocabulary.from_members(
        [("x",), ("y",)], control_label="nt", delimiter="_", encoding="unique", control_pattern="NT"
    )
    assert vocab.canonical(("y", "x")) == "x_y"
    assert vocab.canonical(()) == "nt"
    assert vocab.parse("NT_7") == ()
    restored = PerturbationVocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab
    assert restored.n_perturbations == 2


def test_vocabulary_rejects_bad_encoding():
    with pytest.raises(ValueError, match="encoding='onehot'"):
        PerturbationVocabulary(("A",), "control", encoding="onehot")
