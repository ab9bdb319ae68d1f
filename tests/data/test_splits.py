"""Split invariants: random split, Norman OOD-combination and data-efficiency splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from samsvae_pyro.data import norman_data_efficiency_split, norman_ood_split, random_split
from samsvae_pyro.data.splits import SPLITS

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def test_random_split_fractions_and_determinism():
    split = random_split(1000, seed=3)
    counts = {s: int((split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 640, "val": 160, "test": 200}
    np.testing.assert_array_equal(split, random_split(1000, seed=3))
    assert not np.array_equal(split, random_split(1000, seed=4))


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_random_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        random_split(10, fractions=fractions)


@pytest.fixture(scope="module")
def norman_labels() -> np.ndarray:
    """Controls, 6 singles and 20 combinations with 10-40 cells each, shuffled."""
    rng = np.random.default_rng(0)
    singles = [f"G{i}" for i in range(6)]
    combos = [f"{a}+{b}" for i, a in enumerate(singles) for b in singles[i + 1 :]][:12]
    combos += [
        f"{b}+{a}+X" for a, b in zip(singles, singles[1:], strict=False)
    ]  # triples, reordered
    labels = ["control"] * 200 + [s for s in singles for _ in range(30)]
    labels += [c for c in combos for _ in range(rng.integers(10, 40))]
    return rng.permutation(np.array(labels, dtype=object))


def _combo_sets(labels, split):
    combos = np.array(["+" in lab for lab in labels])
    return {s: set(labels[combos & (split == s)]) for s in SPLITS}


def _combos(labels):
    return sorted({lab for lab in labels if "+" in lab})


def test_ood_split_invariants(norman_labels):
    n = len(_combos(norman_labels))
    test_sets = []
    for f in FRACTIONS:
        split = norman_ood_split(norman_labels, fraction=f, split_seed=1)
        sets = _combo_sets(norman_labels, split)
        assert set(split) <= set(SPLITS)
        assert len(sets["train"]) == math.floor(f * n)
        assert sets["val"] <= sets["train"]
        assert len(sets["test"]) == n - (3 * n) // 4
        if f <= 0.75:
            assert not sets["train"] & sets["test"]
        test_sets.append(sets["test"])
        single = np.array(["+" not in lab for lab in norman_labels])
        assert set(split[single]) == {"train", "val"}
        assert abs((split[single] == "val").mean() - 0.2) < 0.01
    assert all(s == test_sets[0] for s in test_sets)


def test_ood_split_is_nested_across_fractions(norman_labels):
    splits = [norman_ood_split(norman_labels, fraction=f, split_seed=2) for f in FRACTIONS]
    for small, large in zip(splits, splits[1:], strict=False):
        assert np.all(large[small == "train"] == "train")
        assert np.all(large[small == "val"] == "val")
        np.testing.assert_array_equal(small == "test", large == "test")


def test_ood_split_cell_pools_are_80_20(norman_labels):
    split = norman_ood_split(norman_labels, fraction=1.0, split_seed=0)
    combo = np.array(["+" in lab for lab in norman_labels])
    in_test_combo = np.isin(norman_labels, list(_combo_sets(norman_labels, split)["test"]))
    assert abs((split[in_test_combo] == "test").mean() - 0.2) < 0.06
    trained = split[combo & (split != "test") & (split != "excluded")]
    assert abs((trained == "val").mean() - 0.2) < 0.03


def test_ood_split_depends_on_seed_only(norman_labels):
    a = norman_ood_split(norman_labels, fraction=0.5, split_seed=0)
    np.testing.assert_array_equal(a, norman_ood_split(norman_labels, fraction=0.5, split_seed=0))
    assert not np.array_equal(a, norman_ood_split(norman_labels, fraction=0.5, split_seed=1))


def test_data_efficiency_split(norman_labels):
    combo = np.array(["+" in lab for lab in norman_labels])
    splits = [
        norman_data_efficiency_split(norman_labels, fraction=f, split_seed=0) for f in FRACTIONS
    ]
    pool = int((splits[-1][combo] == "train").sum())
    for f, split in zip(FRACTIONS, splits, strict=True):
        assert int((split[combo] == "train").sum()) == math.floor(f * pool)
        np.testing.assert_array_equal(split[~combo], splits[-1][~combo])
        np.testing.assert_array_equal(split == "test", splits[-1] == "test")
        np.testing.assert_array_equal(split == "val", splits[-1] == "val")
    for small, large in zip(splits, splits[1:], strict=False):
        assert np.all(large[small == "train"] == "train")
    assert _combo_sets(norman_labels, splits[0])["test"] == set(_combos(norman_labels))


def test_norman_split_rejects_bad_fraction(norman_labels):
    with pytest.raises(ValueError, match="fraction=1.5"):
        norman_ood_split(norman_labels, fraction=1.5)


def test_held_out_conditions_split_holds_whole_conditions_out():
    from samsvae_pyro.data import held_out_conditions_split

    labels = ["control"] * 10 + ["A"] * 10 + ["B"] * 10 + ["A+B"] * 5 + ["B+A"] * 5 + ["C+D"] * 10
    split = held_out_conditions_split(labels, ["A+B"], val_fraction=0.2, seed=1)
    labels = np.array(labels)
    assert (split[np.isin(labels, ["A+B", "B+A"])] == "test").all()  # order-insensitive
    others = split[~np.isin(labels, ["A+B", "B+A"])]
    assert set(others) == {"train", "val"} and (others == "val").sum() == 8
    np.testing.assert_array_equal(split, held_out_conditions_split(list(labels), ["B+A"], seed=1))
    with pytest.raises(ValueError, match="no cells"):
        held_out_conditions_split(list(labels), ["A+C"])
    with pytest.raises(ValueError, match="control"):
        held_out_conditions_split(list(labels), ["control"])
