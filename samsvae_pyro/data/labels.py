"""Perturbation labels and the perturbation vocabulary (docs/model.md, section 1, "sum" and "unique").

A condition label such as ``"B+A"`` names the perturbations a cell received. It is parsed into
its *members*, a sorted tuple without duplicates (``("A", "B")``); a control cell has no
members (``()``). The :class:`PerturbationVocabulary` turns members into the dosage matrix D:

- ``"sum"``: one column per single perturbation; a combination is the sum of its members'
  one-hot rows, so "A+B" has d = 1_A + 1_B and combinations compose additively in latent space.
- ``"unique"``: one column per distinct non-control combination, named by its canonical label;
  every condition is a one-hot row.

Deliberate choices beyond the paper:

- A member equal to the control label is dropped, so GEARS-style labels ("A+ctrl" with
  ``control_label="ctrl"``) read as the single "A" and "ctrl+ctrl" as a control.
- ``delimiter=None`` takes a label whole, without splitting. This is how guide-pair labels
  such as Replogle's ``sgID_AB`` (which contain "+" characters) are read.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from samsvae_pyro._typing import Encoding

DEFAULT_DELIMITER = "+"
ENCODINGS: tuple[str, ...] = ("sum", "unique")
_SHOW = 5  # how many offending labels an error message lists


def parse_label(
    label: str,
    *,
    delimiter: str | None = DEFAULT_DELIMITER,
    control_label: str = "control",
    control_pattern: str | None = None,
) -> tuple[str, ...]:
    """Members of a condition label: sorted, de-duplicated, whitespace stripped.

    Parameters
    ----------
    label
        Condition label, e.g. ``"CBL+CNN1"``.
    delimiter
        Separator between the members of a combination; ``None`` takes the label whole.
    control_label
        Label of control cells. Members equal to it are dropped ("A+control" is "A").
    control_pattern
        If given, any label containing this substring is a control (e.g. ``"non-targeting"``).

    Returns
    -------
    The members, ``()`` for a control.

    Examples
    --------
    >>> parse_label("B+A")
    ('A', 'B')
    >>> parse_label("control")
    ()
    >>> parse_label("non-targeting_01", control_pattern="non-targeting")
    ()
    """
    text = str(label).strip()
    if text == control_label or (control_pattern is not None and control_pattern in text):
        return ()
    parts = [text] if delimiter is None else [p.strip() for p in text.split(delimiter)]
    if "" in parts:
        raise ValueError(
            f"Perturbation label {label!r} has an empty member (delimiter {delimiter!r}). "
            "Fix the label, or pass the delimiter your labels actually use."
        )
    return tuple(sorted(set(parts) - {control_label}))


def canonical_label(
    members: Sequence[str], *, control_label: str, delimiter: str | None = DEFAULT_DELIMITER
) -> str:
    """Canonical label of a member tuple: sorted members joined by the delimiter.

    A control (no members) gets ``control_label``; with ``delimiter=None`` members are
    joined by ``"+"``.
    """
    if not members:
        return control_label
    return (delimiter or DEFAULT_DELIMITER).join(sorted(members))


def factorize_members(
    labels: Iterable[Any], parse: Callable[[Any], tuple[str, ...]]
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Parse each distinct label once.

    Parameters
    ----------
    labels
        One label per cell.
    parse
        Callable label -> members.

    Returns
    -------
    codes
        (N,) int64 index of each cell's distinct label.
    members
        Members of each distinct label, in code order.
    """
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=False)
    return codes.astype(np.int64), [parse(u) for u in uniques]


def format_names(names: Sequence[str]) -> str:
    """Up to five names quoted and comma-separated, with a count of the rest; "none" for no names."""
    if len(names) == 0:
        return "none"
    shown = ", ".join(repr(n) for n in names[:_SHOW])
    more = len(names) - _SHOW
    return shown + (f" (and {more} more)" if more > 0 else "")


def close_matches(name: str, known: Sequence[str]) -> list[str]:
    """Known names like ``name``: the same up to case first, then difflib's close matches (at most 3)."""
    same_case = [k for k in known if k.casefold() == name.casefold()]
    return list(dict.fromkeys(same_case + difflib.get_close_matches(name, known, n=3, cutoff=0.6)))[:3]


def warn_case_variants(names: Iterable[str]) -> None:
    """Warn (UserWarning) when perturbation names differ only in case, e.g. "klf1" next to "KLF1".

    They stay distinct perturbations (gene symbols of different species can differ only in case), but
    more often one screen spelled the same target two ways; the warning lists the groups found.
    """
    groups: dict[str, set[str]] = {}
    for name in names:
        groups.setdefault(str(name).casefold(), set()).add(str(name))
    variants = [" / ".join(repr(n) for n in sorted(g)) for g in groups.values() if len(g) > 1]
    if variants:
        more = f" (and {len(variants) - _SHOW} more)" if len(variants) > _SHOW else ""
        warnings.warn(
            f"Perturbation names that differ only in case are kept as different perturbations: "
            f"{'; '.join(sorted(variants)[:_SHOW])}{more}. If they are the same target, make the labels "
            "consistent first (e.g. adata.obs[key] = adata.obs[key].str.upper()).",
            UserWarning, stacklevel=2,
        )


@dataclass(frozen=True)
class PerturbationVocabulary:
    """The columns of the dosage matrix D and the rules that map labels onto them.

    Parameters
    ----------
    perturbations
        Column names of D, in order: single perturbations ("sum") or canonical
        combination labels ("unique").
    control_label
        Label of control cells (their D row is zero).
    delimiter
        Separator of combination members; ``None`` takes labels whole.
    encoding
        ``"sum"`` or ``"unique"`` (see the module docstring).
    control_pattern
        Substring that marks a label as control, if any.

    Examples
    --------
    >>> vocab = PerturbationVocabulary.from_members([("A",), ("A", "B"), ()],
    ...     control_label="control", delimiter="+", encoding="sum", control_pattern=None)
    >>> vocab.perturbations
    ('A', 'B')
    >>> vocab.encode([("A", "B")]).toarray()
    array([[1., 1.]], dtype=float32)
    """

    perturbations: tuple[str, ...]
    control_label: str
    delimiter: str | None = DEFAULT_DELIMITER
    encoding: Encoding = "sum"
    control_pattern: str | None = None

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding={self.encoding!r} is not one of {ENCODINGS}.")
        object.__setattr__(self, "perturbations", tuple(self.perturbations))
        if len(set(self.perturbations)) != len(self.perturbations):
            raise ValueError("PerturbationVocabulary.perturbations has duplicate names.")

    @classmethod
    def from_members(
        cls,
        members: Sequence[tuple[str, ...]],
        *,
        control_label: str,
        delimiter: str | None,
        encoding: Encoding,
        control_pattern: str | None,
    ) -> PerturbationVocabulary:
        """Vocabulary of the (training) cells' parsed labels, columns sorted by name."""
        if encoding == "sum":
            names = {m for ms in members for m in ms}
        else:
            names = {
                canonical_label(ms, control_label=control_label, delimiter=delimiter)
                for ms in members
                if ms
            }
        return cls(tuple(sorted(names)), control_label, delimiter, encoding, control_pattern)

    @property
    def n_perturbations(self) -> int:
        """Number T of columns of D."""
        return len(self.perturbations)

    @cached_property
    def _column(self) -> dict[str, int]:
        return {name: j for j, name in enumerate(self.perturbations)}

    def parse(self, label: str) -> tuple[str, ...]:
        """Members of ``label`` under this vocabulary's delimiter and control rules."""
        return parse_label(
            label,
            delimiter=self.delimiter,
            control_label=self.control_label,
            control_pattern=self.control_pattern,
        )

    def canonical(self, members: Sequence[str]) -> str:
        """Canonical label of ``members`` (``control_label`` for a control)."""
        return canonical_label(members, control_label=self.control_label, delimiter=self.delimiter)

    def members_of_column(self, j: int) -> tuple[str, ...]:
        """The single perturbations that column ``j`` stands for."""
        name = self.perturbations[j]
        return (name,) if self.encoding == "sum" else self.parse(name)

    def _keys(self, members: Sequence[str]) -> list[str]:
        """Column names a member tuple needs (none for a control)."""
        if self.encoding == "sum":
            return list(members)
        return [self.canonical(members)] if members else []

    def unknown(self, members: Sequence[tuple[str, ...]]) -> list[str]:
        """Names in ``members`` without a column, in order of first appearance."""
        missing = (k for ms in members for k in self._keys(ms) if k not in self._column)
        return list(dict.fromkeys(missing))

    def encode(self, members: Sequence[tuple[str, ...]]) -> sp.csr_matrix:
        """Dosage rows for parsed labels.

        Parameters
        ----------
        members
            Parsed labels, one per row.

        Returns
        -------
        D as CSR float32: the sum of the members' one-hots ("sum") or the one-hot of the
        combination ("unique").

        Shapes
        ------
        D : (n, T)
        """
        missing = self.unknown(members)
        if missing:
            hints = [f"{name!r} -> {format_names(close)}" for name in missing[:_SHOW]
                     if (close := close_matches(name, self.perturbations))]
            similar = f" Close matches: {'; '.join(hints)}." if hints else ""
            raise ValueError(
                f"Perturbation(s) {format_names(missing)} are not in the vocabulary "
                f"({self.encoding!r} encoding, {self.n_perturbations} columns).{similar} The vocabulary "
                "was built on the training data: predictions can only use perturbations seen in "
                "training."
            )
        cols = [[self._column[k] for k in self._keys(ms)] for ms in members]
        indptr = np.cumsum([0] + [len(c) for c in cols], dtype=np.int64)
        indices = np.fromiter((j for c in cols for j in c), dtype=np.int64, count=indptr[-1])
        data = np.ones(len(indices), dtype=np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(cols), self.n_perturbations))

    def encode_labels(self, labels: Iterable[str]) -> sp.csr_matrix:
        """Dosage rows for raw condition labels, parsing each distinct label once.

        Shapes
        ------
        D : (n, T) CSR float32
        """
        codes, members = factorize_members(labels, self.parse)
        return self.encode(members)[codes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` inverts it."""
        out = asdict(self)
        out["perturbations"] = list(self.perturbations)
        return out

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PerturbationVocabulary:
        """Rebuild a vocabulary saved with :meth:`to_dict`."""
        return cls(**{**state, "perturbations": tuple(state["perturbations"])})
