"""Checks of the training arguments, run before the first step (so that a bad value changes nothing).

Each argument has one rule: an integer with a lower bound, or a finite float that is positive or
non-negative; some may be ``None``. A bad value is a ValueError naming the argument, the value, the rule
and what the argument means. Without these checks ``max_steps=-5`` or NaN silently did nothing,
``val_every=0`` divided by zero after the first optimizer step, a negative ``clip_norm`` turned the
gradient around (torch scales by ``clip_norm / norm``) and ``lr=0`` trained nothing.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

# argument -> (kind, lower bound, bound inclusive, None allowed, meaning)
_RULES: dict[str, tuple[str, float, bool, bool, str]] = {
    "max_steps": ("int", 0, True, False, "the number of training steps"),
    "val_every": ("int", 1, True, False, "steps between validation passes"),
    "early_stopping_patience": ("int", 1, True, True, "validation passes without improvement before stopping"),
    "batch_size": ("int", 1, True, False, "cells per minibatch"),
    "n_particles": ("int", 1, True, False, "samples of the latents per cell in the ELBO"),
    "devices": ("int", 1, True, False, "training processes (devices) per node"),
    "num_nodes": ("int", 1, True, False, "machines of a multi-node run"),
    "checkpoint_every": ("int", 1, True, True, "steps between checkpoints of a long run"),
    "seed": ("int", 0, True, False, "the training random seed"),
    "bootstrap": ("int", 0, True, True, "the seed of a bootstrap resample of the training cells; None trains on them all"),
    "lr": ("float", 0.0, False, False, "the Adam learning rate"),
    "lr_globals": ("float", 0.0, False, True, "the learning rate of q(M) and q(E)"),
    "weight_decay": ("float", 0.0, True, False, "the L2 weight decay"),
    "clip_norm": ("float", 0.0, False, True, "the bound on the gradient norm; None turns clipping off"),
}


def check_training_arguments(**arguments: Any) -> None:
    """Raise a ValueError for the first argument (by keyword, see ``_RULES``) that breaks its rule.

    Examples
    --------
    >>> check_training_arguments(max_steps=100, lr=1e-3, clip_norm=None)
    >>> check_training_arguments(val_every=0)
    Traceback (most recent call last):
    ...
    ValueError: val_every=0 must be an integer >= 1 (steps between validation passes).
    """
    for name, value in arguments.items():
        kind, bound, inclusive, optional, meaning = _RULES[name]
        if value is None and optional:
            continue
        if kind == "int":
            ok = isinstance(value, Integral) and not isinstance(value, bool) and value >= bound
            rule = f"an integer >= {int(bound)}"
        else:
            ok = (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
                  and (value >= bound if inclusive else value > bound))
            rule = f"a finite number {'>=' if inclusive else '>'} {bound:g}"
        if not ok:
            also = " or None" if optional else ""
            raise ValueError(f"{name}={value!r} must be {rule}{also} ({meaning}).")
