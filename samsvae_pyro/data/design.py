"""The perturbation design: AnnData -> validated :class:`PerturbationData` (docs/model.md, sections 1, 6).

:func:`build_perturbation_data` reads counts, condition labels and splits from an AnnData,
validates them, and returns everything the models consume: counts (sparse stays sparse), the
dosage matrix D, the vocabulary, library sizes, splits, and per-gene normalisation statistics of
the training cells (the encoder input x~ = (log(1 + x) - mean_train) / sd_train of docs/model.md,
section 2).

Memory: the count matrix is never densified. A CSR float32 input is used as is (no copy: the
returned ``counts`` shares its arrays with the AnnData, which is never modified); a CSR input of
another dtype gets a float32 copy of its ``data`` array (index arrays shared); other sparse
formats are converted to CSR (copy); a dense input is converted with ``np.asarray(...,
float32)`` (no copy if already float32). Re-ordering genes to match a ``reference`` copies the
matrix. Validation, library sizes and statistics run over row chunks.

Counts on disk (``anndata.read_h5ad(path, backed="r")``, or :func:`~samsvae_pyro.data.read_backed` for
``.h5ad`` and ``.zarr``) stay there: ``counts`` is then an :class:`~samsvae_pyro.data.ondisk.OnDiskMatrix`
that reads rows on demand, and validation, library sizes and statistics stream over row chunks of at
most :data:`~samsvae_pyro.data.ondisk.CHUNK_VALUES` dense values, with the same results as in memory.

Deliberate choices beyond the paper:

- ``count_data=False`` (continuous data for the "normal" likelihood, e.g. the paper simulation)
  skips the non-negative and integer checks, and the statistics are of x itself
  (``x_transform="identity"``) rather than of log(1 + x).
- Counts must be at most :data:`MAX_COUNT` = 2^24, the range where float32 (the models' precision)
  holds every integer exactly; float16 counts are accepted only when every value is below 2,048, the
  range where no larger count can have been rounded when the file was written (5913 is stored as
  5912). Anything else is rejected rather than silently rounded.
- The per-gene sd is floored at :data:`STD_FLOOR` = 0.01 (log1p units), so a gene never
  expressed in the training cells cannot blow up the standardised input of held-out cells.
- Cells of the "excluded" split whose condition is unknown to the vocabulary get a zero dosage
  row; they are never served by :meth:`PerturbationData.indices` of a real split.
- With a ``reference``, the new data need not contain control cells and may have extra genes
  (they are dropped); the label rules (control label, delimiter, pattern, encoding) are the
  reference vocabulary's.
- The columns of D come from the training cells (``vocabulary="train"``, default), so every
  column is learned from data. ``vocabulary="all"`` takes them from every non-excluded cell, as
  the paper's unique-encoding runs do: a held-out combination then has its own column, fitted to
  the prior only, and the model can predict it only from that prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from samsvae_pyro._typing import Encoding
from samsvae_pyro.data.labels import (
    DEFAULT_DELIMITER,
    ENCODINGS,
    PerturbationVocabulary,
    factorize_members,
    format_names,
    warn_case_variants,
)
from samsvae_pyro.data.ondisk import CHUNK_VALUES, OnDiskMatrix, is_on_disk
from samsvae_pyro.data.splits import SPLIT_DTYPE, SPLITS, random_split

STD_FLOOR = 1e-2
MAX_COUNT = 2**24  # the largest integer float32 holds exactly, with every smaller one
FLOAT16_EXACT_BELOW = 2048  # float16 holds every integer up to 2048; a stored 2048 may be a rounded 2049
VOCABULARY_SCOPES = ("train", "all")

Matrix = sp.csr_matrix | np.ndarray | OnDiskMatrix


@dataclass(eq=False)
class PerturbationData:
    """Validated design of a perturbation screen: counts X, dosages D and everything around them.

    Parameters
    ----------
    counts
        Counts (or values for the "normal" likelihood), CSR float32 if the input was sparse; an
        :class:`~samsvae_pyro.data.ondisk.OnDiskMatrix` (rows read on demand) if the input was on disk.
    dosages
        Dosage matrix D, CSR float32; a control cell has a zero row.
    vocabulary
        The columns of D and the label rules.
    labels
        Canonical condition label per cell (controls get the control label).
    library_size
        Row sums of ``counts`` over the modelled genes.
    split
        "train", "val", "test" or "excluded" per cell.
    x_mean, x_std
        Per-gene mean and sd (floored at ``STD_FLOOR``) of ``x_transform(counts)`` over the
        training cells.
    obs_names, var_names
        Cell and gene names.
    x_transform
        ``"log1p"`` (count data) or ``"identity"``: the map applied before standardising.
    user_labels
        The user's own label of each condition whose canonical label (members sorted) differs from it,
        e.g. ``{"CEBPA+KLF1": "KLF1+CEBPA"}``: the most common spelling in the obs column.

    Shapes
    ------
    counts : (N, G)
    dosages : (N, T)
    labels, library_size, split : (N,)
    x_mean, x_std : (G,)
    """

    counts: Matrix
    dosages: sp.csr_matrix
    vocabulary: PerturbationVocabulary
    labels: np.ndarray
    library_size: np.ndarray
    split: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    obs_names: pd.Index
    var_names: pd.Index
    x_transform: Literal["log1p", "identity"] = "log1p"
    user_labels: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        splits = {s: int((self.split == s).sum()) for s in SPLITS if (self.split == s).any()}
        return (
            f"PerturbationData(n_cells={self.n_cells}, n_genes={self.n_genes}, "
            f"n_perturbations={self.n_perturbations}, encoding={self.vocabulary.encoding!r}, "
            f"splits={splits})"
        )

    @property
    def n_cells(self) -> int:
        """Number N of cells."""
        return self.counts.shape[0]

    @property
    def n_genes(self) -> int:
        """Number G of genes."""
        return self.counts.shape[1]

    @property
    def n_perturbations(self) -> int:
        """Number T of columns of D."""
        return self.vocabulary.n_perturbations

    @property
    def control_mask(self) -> np.ndarray:
        """(N,) bool, True for control cells."""
        return self.labels == self.vocabulary.control_label

    def indices(self, split: str) -> np.ndarray:
        """(n,) int64 row positions of the cells of ``split``; ValueError if there are none."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {SPLITS}.")
        rows = np.flatnonzero(self.split == split).astype(np.int64)
        if len(rows) == 0:
            raise ValueError(
                f"The {split!r} split is empty. Choose another split, or rebuild the data with "
                "a split_key / split function that puts cells in it."
            )
        return rows

    def _mask(self, split: str | None) -> np.ndarray:
        return np.ones(self.n_cells, dtype=bool) if split is None else self.split == split

    def cells_per_perturbation(self, split: str | None = "train") -> np.ndarray:
        """(T,) number of cells of ``split`` (all cells if None) with d_t != 0 (N_t of docs/model.md, section 3)."""
        rows = self.dosages[np.flatnonzero(self._mask(split))]
        return np.bincount(rows.indices[rows.data != 0], minlength=self.n_perturbations)

    def conditions(self, split: str | None = None) -> list[str]:
        """Sorted distinct non-control condition labels (of the cells of ``split`` if given)."""
        keep = self._mask(split) & ~self.control_mask
        return sorted(set(self.labels[keep]))

    def user_label(self, label: str) -> str:
        """The user's own spelling of a canonical condition label (the label itself if it has none)."""
        return self.user_labels.get(label, label)

    def canonical_labels(self, labels: Sequence[str]) -> list[str]:
        """Canonical form of condition labels in any member order, e.g. "KLF1+CEBPA" -> "CEBPA+KLF1"."""
        return [self.vocabulary.canonical(self.vocabulary.parse(label)) for label in labels]

    def condition_dosages(self, labels: Sequence[str]) -> np.ndarray:
        """(n, T) float32 dense dosage rows for condition labels, via the vocabulary."""
        return self.vocabulary.encode_labels(labels).toarray()

    def summary(self) -> pd.DataFrame:
        """Per split present: n_cells, n_conditions, n_control_cells and the conditions."""
        rows = {}
        for name in (s for s in SPLITS if (self.split == s).any()):
            conditions = self.conditions(name)
            rows[name] = {
                "n_cells": int((self.split == name).sum()),
                "n_conditions": len(conditions),
                "n_control_cells": int((self.control_mask & (self.split == name)).sum()),
                "conditions": conditions,
            }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")


def build_perturbation_data(
    adata: AnnData,
    *,
    perturbation_key: str | None = None,
    control_label: str = "control",
    delimiter: str = DEFAULT_DELIMITER,
    dosage_columns: str | Sequence[str] | None = None,
    control_pattern: str | None = None,
    layer: str | None = None,
    split_key: str | None = None,
    split_seed: int = 0,
    encoding: Encoding = "sum",
    count_data: bool = True,
    reference: PerturbationData | None = None,
    vocabulary: Literal["train", "all"] = "train",
) -> PerturbationData:
    """Validated perturbation design of an AnnData.

    Labels come from exactly one source: ``perturbation_key`` (an obs column of labels such as
    "control", "A", "A+B", split by ``delimiter``, any number of members, order-insensitive);
    ``perturbation_key`` with ``control_pattern`` (labels taken whole, without splitting, and
    any label containing the pattern is a control, as Replogle's ``sgID_AB`` with
    ``"non-targeting"``); or ``dosage_columns`` (a list of 0/1 obs columns, or a prefix such as
    ``"guide_"`` selecting the numeric/boolean obs columns whose name starts with it; the
    perturbation name is the column name minus the prefix, an all-zero row is a control).

    Parameters
    ----------
    adata
        Cells x genes. Never modified.
    perturbation_key
        obs column of condition labels.
    control_label
        Label of control cells (and the label given to them in ``labels``).
    delimiter
        Separator of combination members.
    dosage_columns
        obs columns (or their common prefix) holding 0/1 indicators.
    control_pattern
        Substring that marks a label of ``perturbation_key`` as control.
    layer
        Layer holding the counts; ``None`` uses ``adata.X``.
    split_key
        obs column with values in "train", "val", "test", "excluded"; ``None`` draws a random
        64/16/20 cell split with ``split_seed``.
    split_seed
        Seed of the random split.
    encoding
        ``"sum"`` or ``"unique"`` (docs/model.md, section 1).
    count_data
        Whether the values are raw counts (validated as non-negative integers of at most 2^24, float16
        only below 2,048; statistics of log(1 + x)); ``False`` for continuous data and the "normal"
        likelihood (only finiteness is checked).
    reference
        Design of the training data whose vocabulary, gene order and statistics are reused
        (only its ``vocabulary``, ``var_names``, ``x_mean``, ``x_std``, ``x_transform`` are read).
    vocabulary
        Which cells define the columns of D: ``"train"`` (the training split) or ``"all"`` (every
        cell not in the "excluded" split, so conditions without training cells get untrained
        columns; the paper's unique-encoding setting). Ignored with a ``reference``.

    Returns
    -------
    The design. Raises ValueError naming the problem and the fix on bad input.

    Examples
    --------
    >>> from samsvae_pyro.data import simulate_counts
    >>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=20, seed=0)
    >>> data = build_perturbation_data(adata, perturbation_key="perturbation",
    ...     control_label="non-targeting", split_key="split")
    >>> data.dosages.shape
    (80, 3)
    """
    if vocabulary not in VOCABULARY_SCOPES:
        raise ValueError(
            f"vocabulary={vocabulary!r} is not one of {VOCABULARY_SCOPES}: 'train' builds the columns "
            "of D from the training cells, 'all' from every non-excluded cell."
        )
    rules = _label_rules(
        reference,
        perturbation_key=perturbation_key,
        dosage_columns=dosage_columns,
        control_label=control_label,
        delimiter=delimiter,
        control_pattern=control_pattern,
        encoding=encoding,
    )
    _check_shape_and_names(adata)
    codes, members, raw = _cell_members(adata, perturbation_key, dosage_columns, rules)
    if reference is None and not any(len(m) == 0 for m in members):
        raise _no_controls_error(rules, members)
    if reference is None:
        warn_case_variants({m for ms in members for m in ms})
    split = _cell_splits(adata, split_key, split_seed)
    counts, var_names, float16 = _aligned_counts(adata, layer, reference)
    library_size = _checked_library_sizes(counts, count_data=count_data, float16=float16, source=_source_name(layer))
    if reference is None:
        columns = _training_vocabulary(codes, members, split, rules, scope=vocabulary)
    else:
        columns = reference.vocabulary
    dosages, labels = _encode_cells(codes, members, split, columns)
    x_mean, x_std, transform = _statistics(counts, split, count_data, reference)
    return PerturbationData(
        counts=counts,
        dosages=dosages,
        vocabulary=columns,
        labels=labels,
        library_size=library_size,
        split=split,
        x_mean=x_mean,
        x_std=x_std,
        obs_names=adata.obs_names.copy(),
        var_names=pd.Index(var_names),
        x_transform=transform,
        user_labels=_user_labels(codes, members, raw, columns),
    )


# --- labels


def _label_rules(
    reference: PerturbationData | None,
    *,
    perturbation_key: str | None,
    dosage_columns: str | Sequence[str] | None,
    control_label: str,
    delimiter: str | None,
    control_pattern: str | None,
    encoding: str,
) -> PerturbationVocabulary:
    """Check the label-source arguments; return an empty vocabulary carrying the label rules."""
    if (perturbation_key is None) == (dosage_columns is None):
        raise ValueError(
            "Pass exactly one label source: perturbation_key (an obs column of labels) or "
            f"dosage_columns (0/1 obs columns or their prefix); got perturbation_key="
            f"{perturbation_key!r}, dosage_columns={dosage_columns!r}."
        )
    if control_pattern is not None and perturbation_key is None:
        raise ValueError(
            "control_pattern applies to the labels of perturbation_key; pass perturbation_key too."
        )
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding={encoding!r} is not one of {ENCODINGS}.")
    if reference is not None:
        return reference.vocabulary
    if control_pattern is not None:
        delimiter = None  # guide-pair labels are taken whole
    return PerturbationVocabulary((), control_label, delimiter, encoding, control_pattern)


def _obs_column(adata: AnnData, key: str, argument: str) -> pd.Series:
    if key not in adata.obs.columns:
        raise ValueError(
            f"{argument}={key!r} is not an obs column. Available columns: "
            f"{format_names(list(map(str, adata.obs.columns)))}."
        )
    return adata.obs[key]


def _cell_members(
    adata: AnnData,
    perturbation_key: str | None,
    dosage_columns: str | Sequence[str] | None,
    rules: PerturbationVocabulary,
) -> tuple[np.ndarray, list[tuple[str, ...]], list[str] | None]:
    """(N,) code of each cell's distinct condition, the members of each condition, and each condition's
    label as written in the obs column (``None`` for dosage columns)."""
    if perturbation_key is None:
        return (*_members_from_columns(adata, dosage_columns), None)
    column = _obs_column(adata, perturbation_key, "perturbation_key")
    missing = column.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"obs[{perturbation_key!r}] has {missing.sum()} missing (NaN) labels, e.g. cells "
            f"{format_names(list(adata.obs_names[missing]))}. Give them a label (controls: "
            f"{rules.control_label!r}) or drop those cells."
        )
    values = column.to_numpy(dtype=object)
    codes, members = factorize_members(values, rules.parse)
    return codes, members, list(pd.unique(pd.Series(values, dtype=object)).astype(str))


def _user_labels(
    codes: np.ndarray, members: list[tuple[str, ...]], raw: list[str] | None, vocabulary: PerturbationVocabulary
) -> dict[str, str]:
    """Canonical label -> the user's most common spelling of it, where the two differ."""
    if raw is None:
        return {}
    chosen: dict[str, str] = {}
    for code in np.argsort(-np.bincount(codes, minlength=len(members)), kind="stable"):
        if members[code]:
            chosen.setdefault(vocabulary.canonical(members[code]), raw[code].strip())
    return {canonical: label for canonical, label in chosen.items() if canonical != label}


def _is_dosage_dtype(column: pd.Series) -> bool:
    return is_numeric_dtype(column) or is_bool_dtype(column)


def dosage_columns_with_prefix(obs: pd.DataFrame, prefix: str) -> list[str]:
    """Numeric or boolean obs columns whose name starts with ``prefix`` (string columns such as
    Norman's ``guide_identity`` / ``guide_ids`` are skipped)."""
    return [c for c in obs.columns if str(c).startswith(prefix) and _is_dosage_dtype(obs[c])]


def _dosage_column_names(
    adata: AnnData, dosage_columns: str | Sequence[str]
) -> tuple[list[str], list[str]]:
    """obs columns holding dosages, and the perturbation name of each."""
    obs = adata.obs
    if isinstance(dosage_columns, str):
        columns = dosage_columns_with_prefix(obs, dosage_columns)
        if not columns:
            raise ValueError(
                f"No numeric obs column starts with dosage_columns={dosage_columns!r}. Available "
                f"columns: {format_names(list(map(str, obs.columns)))}."
            )
        return columns, [str(c)[len(dosage_columns) :] for c in columns]
    columns = list(dosage_columns)
    for c in columns:
        if not _is_dosage_dtype(_obs_column(adata, c, "dosage_columns")):
            raise ValueError(
                f"dosage column obs[{c!r}] is not numeric or boolean; pass 0/1 indicator columns."
            )
    return columns, [str(c) for c in columns]


def _members_from_columns(
    adata: AnnData, dosage_columns: str | Sequence[str]
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    columns, names = _dosage_column_names(adata, dosage_columns)
    values = adata.obs[columns].to_numpy(dtype=np.float32)  # (N, C)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        j = np.flatnonzero(bad.any(axis=0))[0]
        raise ValueError(
            f"dosage column obs[{columns[j]!r}] has values other than 0/1 (e.g. "
            f"{values[bad[:, j], j][0]}): dosage columns must be 0/1 indicators (NaN not allowed)."
        )
    patterns, codes = np.unique(values != 0, axis=0, return_inverse=True)
    members = [tuple(sorted(names[j] for j in np.flatnonzero(row))) for row in patterns]
    return codes.ravel().astype(np.int64), members


def _no_controls_error(rules: PerturbationVocabulary, members: list[tuple[str, ...]]) -> ValueError:
    rule = f"label {rules.control_label!r}" + (
        f" or labels containing {rules.control_pattern!r}" if rules.control_pattern else ""
    )
    seen = [rules.canonical(m) for m in members]
    return ValueError(
        f"No control cells: no cell has the {rule} (or an all-zero dosage row). Observed labels "
        f"include {format_names(seen)}. Pass the right control_label (or control_pattern)."
    )


# --- splits and vocabulary


def _cell_splits(adata: AnnData, split_key: str | None, seed: int) -> np.ndarray:
    if split_key is None:
        return random_split(adata.n_obs, seed=seed)
    values = _obs_column(adata, split_key, "split_key").astype(object).to_numpy()
    bad = sorted({str(v) for v in values} - set(SPLITS))
    if bad:
        raise ValueError(
            f"obs[{split_key!r}] has values {format_names(bad)} outside the allowed splits "
            f"{SPLITS}. Recode the column, or pass split_key=None for a random 64/16/20 split."
        )
    return values.astype(SPLIT_DTYPE)


def _training_vocabulary(
    codes: np.ndarray,
    members: list[tuple[str, ...]],
    split: np.ndarray,
    rules: PerturbationVocabulary,
    *,
    scope: str = "train",
) -> PerturbationVocabulary:
    """Columns of D from the training cells (``scope="train"``) or from every non-excluded cell ("all")."""
    if not (split == "train").any():
        raise ValueError(
            "The 'train' split is empty, so no vocabulary can be built. Put cells in the training "
            "split (split_key / split function), or pass reference= to reuse a training design."
        )
    chosen = split == "train" if scope == "train" else split != "excluded"
    vocabulary = PerturbationVocabulary.from_members(
        [members[c] for c in np.unique(codes[chosen])],
        control_label=rules.control_label,
        delimiter=rules.delimiter,
        encoding=rules.encoding,
        control_pattern=rules.control_pattern,
    )
    if vocabulary.n_perturbations == 0:
        raise ValueError(
            "The training split holds only control cells: no perturbation can be learned."
        )
    return vocabulary


def _encode_cells(
    codes: np.ndarray,
    members: list[tuple[str, ...]],
    split: np.ndarray,
    vocabulary: PerturbationVocabulary,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Dosage rows (N, T) and canonical labels (N,); unknown conditions only in excluded cells."""
    unknown = np.array([bool(vocabulary.unknown([m])) for m in members], dtype=bool)
    used = np.unique(codes[split != "excluded"])
    bad = [vocabulary.canonical(members[c]) for c in used if unknown[c]]
    if bad:
        raise ValueError(
            f"Condition(s) {format_names(bad)} of non-excluded cells use perturbations unknown to "
            f"the vocabulary ({vocabulary.encoding!r} encoding, built on the training data): "
            f"{format_names(vocabulary.unknown([members[c] for c in used]))}. Put cells of these "
            "conditions in the training split, use encoding='sum' so that combinations of "
            "single perturbations seen in training are allowed, or pass vocabulary='all' to give "
            "them untrained columns (predicted from the prior only)."
        )
    encodable = [() if u else m for m, u in zip(members, unknown, strict=True)]
    labels = np.array([vocabulary.canonical(m) for m in members], dtype=object)
    return vocabulary.encode(encodable)[codes], labels[codes]


# --- counts


def _source_name(layer: str | None) -> str:
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def _check_shape_and_names(adata: AnnData) -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"The AnnData has {adata.n_obs} cells and {adata.n_vars} genes; both must be positive."
        )
    for axis, names, fix in (("gene", adata.var_names, "var"), ("cell", adata.obs_names, "obs")):
        if not names.is_unique:
            dup = list(names[names.duplicated()].unique())
            raise ValueError(
                f"Duplicate {axis} names, e.g. {format_names(dup)}. Call "
                f"adata.{fix}_names_make_unique() (or deduplicate them) first."
            )


def _read_matrix(adata: AnnData, layer: str | None) -> tuple[Matrix, bool]:
    """The counts as float32 (CSR, dense, or on disk), and whether they are stored as float16."""
    if layer is not None and layer not in adata.layers:
        raise ValueError(
            f"layer={layer!r} is not in adata.layers (available: "
            f"{format_names(list(adata.layers.keys()))}). Pass one of these, or "
            "layer=None to use adata.X."
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError("adata.X is empty; pass the layer holding the counts (layer=...).")
    float16 = matrix.dtype == np.float16
    if is_on_disk(matrix):
        return OnDiskMatrix(matrix, name=_source_name(layer)), float16
    if not sp.issparse(matrix):
        return np.asarray(matrix, dtype=np.float32), float16
    matrix = sp.csr_matrix(matrix)  # shares arrays when already CSR
    if matrix.dtype != np.float32:
        matrix = sp.csr_matrix(
            (matrix.data.astype(np.float32), matrix.indices, matrix.indptr), shape=matrix.shape
        )
    return matrix, float16


def _aligned_counts(
    adata: AnnData, layer: str | None, reference: PerturbationData | None
) -> tuple[Matrix, pd.Index, bool]:
    """Counts with the reference's genes and gene order (if a reference is given), and whether they are
    stored as float16."""
    counts, float16 = _read_matrix(adata, layer)
    if reference is None or adata.var_names.equals(reference.var_names):
        return counts, adata.var_names, float16
    position = adata.var_names.get_indexer(reference.var_names)
    missing = list(reference.var_names[position < 0])
    if missing:
        raise ValueError(
            f"{len(missing)} gene(s) of the reference are missing from the new data, e.g. "
            f"{format_names(missing)}. The new AnnData must contain the training genes "
            "(subset it with adata[:, reference.var_names] after adding them)."
        )
    return counts[:, position], reference.var_names, float16


def _row_blocks(counts: Matrix):
    """Consecutive row blocks of the counts, in memory, each of at most ``CHUNK_VALUES`` dense values."""
    step = max(1, CHUNK_VALUES // max(1, counts.shape[1]))
    for start in range(0, counts.shape[0], step):
        yield counts[start : start + step]


def _checked_library_sizes(counts: Matrix, *, count_data: bool, float16: bool, source: str) -> np.ndarray:
    """(N,) float32 row sums of the counts, validated block by block on the way (one pass over the data)."""
    sums = []
    for block in _row_blocks(counts):
        _validate_values(block.data if sp.issparse(block) else block, count_data=count_data, float16=float16,
                         source=source)
        sums.append(np.asarray(block.sum(axis=1, dtype=np.float64)).ravel())
    return np.concatenate(sums).astype(np.float32)


def _validate_values(block: np.ndarray, *, count_data: bool, float16: bool, source: str) -> None:
    """ValueError naming the problem and the fix if some stored values of ``block`` are not valid."""
    fix = ("pass raw counts (e.g. layer='counts'); for continuous values, register them with "
           "setup_anndata(..., count_data=False) and use likelihood='normal'")
    if count_data and float16 and block.max(initial=0) >= FLOAT16_EXACT_BELOW:
        raise ValueError(
            f"{source} holds counts as float16, which stores integers exactly only up to 2,048 (it holds "
            f"{block.max():g}, so larger counts may have been rounded when it was written). Store the raw counts "
            "as integers or float32 (e.g. from the original file) and register again."
        )
    if not np.isfinite(block).all():
        raise ValueError(
            f"{source} contains NaN or infinite values; remove or impute them first."
        )
    if not count_data:
        return
    if (block < 0).any():
        raise ValueError(
            f"{source} contains negative values (min {block.min()}); counts must be "
            f">= 0: {fix}."
        )
    if (block > MAX_COUNT).any():
        raise ValueError(
            f"{source} contains counts above 2^24 = {MAX_COUNT:,} (max {block.max():g}), which float32 "
            "cannot hold exactly (nor can any sequencing count be that large): check the data, e.g. "
            "whether it was scaled."
        )
    fractional = block[block != np.round(block)]
    if fractional.size:
        raise ValueError(
            f"{source} contains non-integer values (e.g. {fractional.flat[0]}), but count "
            f"likelihoods need raw integer counts: {fix}."
        )


def _statistics(
    counts: Matrix, split: np.ndarray, count_data: bool, reference: PerturbationData | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(x_mean, x_std, x_transform) of the training cells, or the reference's."""
    if reference is not None:
        return reference.x_mean, reference.x_std, reference.x_transform
    transform = "log1p" if count_data else "identity"
    return (*_moments(counts, np.flatnonzero(split == "train"), transform), transform)


def _moments(counts: Matrix, rows: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and floored sd of transform(counts[rows]), accumulated over row chunks.

    Shapes
    ------
    rows : (n,)
    mean, sd : (G,)
    """
    f = np.log1p if transform == "log1p" else np.asarray  # both map 0 to 0
    n_genes = counts.shape[1]
    s1, s2 = np.zeros(n_genes), np.zeros(n_genes)
    step = max(1, CHUNK_VALUES // n_genes)
    for start in range(0, len(rows), step):
        block = counts[rows[start : start + step]]
        if sp.issparse(block):
            v = f(block.data.astype(np.float64))
            s1 += np.bincount(block.indices, v, minlength=n_genes)
            s2 += np.bincount(block.indices, v * v, minlength=n_genes)
        else:
            v = f(block.astype(np.float64))
            s1 += v.sum(axis=0)
            s2 += (v * v).sum(axis=0)
    mean = s1 / len(rows)
    sd = np.sqrt(np.maximum(s2 / len(rows) - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(sd, STD_FLOOR).astype(np.float32)
