"""Residual MLP shared by decoders, encoders and the correlated embedding guide (docs/model.md, section 1)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {
    "leaky_relu": nn.LeakyReLU, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus, "gelu": nn.GELU,
    "identity": nn.Identity,  # a linear network, e.g. for closed-form checks
}


class MLP(nn.Module):
    """Residual MLP with block inputs: h_1 = act(sum_j W_j u_j + c); h_{l+1} = h_l + act(W_l h_l); y = W_out h_L.

    The first layer takes several input blocks and sums their projections with broadcasting, so a
    block shared across particles (e.g. the cell's normalised expression, (B, G)) is projected once
    and added to per-particle blocks (e.g. latent offsets, (S, B, K)).

    Parameters
    ----------
    in_dims
        Width of each input block.
    out_dim
        Output width.
    n_hidden
        Hidden width H (paper: 400).
    n_layers
        Number of hidden layers (paper: 1 for Replogle, {1, 2, 4} for Norman).
    activation
        One of ``"leaky_relu"`` (paper), ``"relu"``, ``"elu"``, ``"softplus"``, ``"gelu"``.
    """

    def __init__(
        self, in_dims: Sequence[int], out_dim: int, *, n_hidden: int = 400, n_layers: int = 1,
        activation: str = "leaky_relu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not supported; choose one of {sorted(ACTIVATIONS)}.")
        if n_layers < 1 or n_hidden < 1:
            raise ValueError(f"n_layers and n_hidden must be >= 1, got n_layers={n_layers}, n_hidden={n_hidden}.")
        self.inputs = nn.ModuleList(nn.Linear(d, n_hidden, bias=(j == 0)) for j, d in enumerate(in_dims))
        self.hidden = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_layers - 1))
        self.output = nn.Linear(n_hidden, out_dim)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, *blocks: Tensor | None, shift: Tensor | None = None) -> Tensor:
        """Apply the network; a ``None`` block is skipped, ``shift`` is added before the first activation.

        Shapes
        ------
        blocks[j] : (..., in_dims[j]), broadcastable to each other; returns (..., out_dim).
        """
        pre = sum(layer(u) for layer, u in zip(self.inputs, blocks) if u is not None)
        if shift is not None:
            pre = pre + shift
        h = self.activation(pre)
        for layer in self.hidden:
            h = h + self.activation(layer(h))
        return self.output(h)


def gaussian_params(out: Tensor, min_variance: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Split an MLP output (..., 2K) into a mean and a scale sqrt(exp(logvar) + min_variance)."""
    loc, logvar = out.chunk(2, dim=-1)
    return loc, torch.sqrt(logvar.exp() + min_variance)
