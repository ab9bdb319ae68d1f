"""Library-size normalisation and the ATE transforms (docs/model.md, section 5): the one home of the target library.

f(x) = log2(1 + 1e4 x / sum_g x_g) ("perturbseq", used for every paper result) or f = identity ("mean",
for continuous data). Rows whose total is zero map to zero instead of NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import get_args

import numpy as np
import scipy.sparse as sp
import torch

from samsvae_pyro._typing import AteMethod

TARGET_LIBRARY = 1e4  # library size of normalised expression and of the "perturbseq" ATE
ATE_METHODS = get_args(AteMethod)


def normalise_library(x: np.ndarray) -> np.ndarray:
    """Rows rescaled to total ``TARGET_LIBRARY`` (rows summing to zero stay zero). Shapes: (..., G)."""
    library = x.sum(-1, keepdims=True)
    return x / np.where(library > 0, library, 1.0) * TARGET_LIBRARY


def perturbseq_transform(
    x: np.ndarray | sp.spmatrix | torch.Tensor,
) -> np.ndarray | sp.csr_matrix | torch.Tensor:
    """f(x) = log2(1 + 1e4 x / sum_g x_g), the "perturbseq" ATE transform, row by row.

    Parameters
    ----------
    x
        Counts (raw or sampled); rows whose sum is zero map to zero.

    Returns
    -------
    The transformed values, of the same kind as ``x`` (sparse stays sparse).

    Shapes
    ------
    x : (..., G) for arrays and tensors (e.g. (S, B, G) particle samples), (N, G) for sparse.
    returns : same as x.

    Examples
    --------
    >>> perturbseq_transform(np.array([[1.0, 0.0, 3.0]])).round(3)
    array([[11.288,  0.   , 12.873]])
    """
    if sp.issparse(x):
        library = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
        scale = TARGET_LIBRARY / np.where(library > 0, library, 1.0)
        return (sp.diags(scale) @ sp.csr_matrix(x)).log1p() / math.log(2)
    if isinstance(x, torch.Tensor):
        library = x.sum(-1, keepdim=True)
        scale = TARGET_LIBRARY / torch.where(library > 0, library, torch.ones_like(library))
        return torch.log1p(x * scale) / math.log(2)
    x = np.asarray(x, dtype=float)
    library = x.sum(-1, keepdims=True)
    return np.log1p(x * (TARGET_LIBRARY / np.where(library > 0, library, 1.0))) / math.log(2)


def ate_method(count_data: bool) -> AteMethod:
    """The ATE method of a model: "perturbseq" for count likelihoods, "mean" for continuous data (where
    log2(1 + 1e4 x / sum x) is meaningless for values that can be negative)."""
    return "perturbseq" if count_data else "mean"


def ate_transform(method: AteMethod) -> Callable:
    """The map f of an ATE method: :func:`perturbseq_transform` ("perturbseq") or the identity ("mean")."""
    if method == "perturbseq":
        return perturbseq_transform
    if method == "mean":
        return _identity
    raise ValueError(f"method={method!r} is not supported; choose 'perturbseq' or 'mean'.")


def _identity(x):
    return x
