"""Training schedules: quantities that change with the step (issue 7's inference experiments).

The paper trains with none of these (no KL annealing, mask temperature 1). They exist so that the
model stays fixed while the inference recipe changes. Names accepted by ``train(schedules=...)``:

* ``"kl_weight"``: beta multiplying log p - log q of every latent site (KL / prior warm-up);
* ``"global_kl_weight"``: the same for the global sites only (E, mask, mask_prob); values above 1
  put extra pressure on the mask prior early in training;
* ``"mask_temperature"``: temperature of the guide's straight-through mask relaxation.

A schedule is a number (constant), a ``(start, end, steps)`` tuple (linear from ``start`` to ``end``
over the first ``steps`` steps, then ``end``), or a callable ``step -> value``. The validation loss
is always the plain ELBO (every weight 1), so checkpoint selection compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from pyro.poutine.messenger import Messenger

from samsvae_pyro.models.plates import GLOBAL_SITES

SCHEDULES = ("kl_weight", "global_kl_weight", "mask_temperature")
ScheduleSpec = Union[float, int, tuple, Callable[[int], float]]


@dataclass(frozen=True)
class Linear:
    """``start`` at step 0, ``end`` from step ``steps`` on, linear in between."""

    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return self.end
        return self.start + (self.end - self.start) * step / self.steps


def make_schedules(specs: dict[str, ScheduleSpec] | None) -> dict[str, Callable[[int], float]]:
    """Validate ``{name: spec}`` and turn every spec into a callable of the step."""
    out = {}
    for name, spec in (specs or {}).items():
        if name not in SCHEDULES:
            raise ValueError(f"Unknown schedule {name!r}; choose among {list(SCHEDULES)}.")
        if callable(spec):
            out[name] = spec
        elif isinstance(spec, (int, float)):
            out[name] = Linear(float(spec), float(spec), 0)
        elif isinstance(spec, (tuple, list)) and len(spec) == 3:
            out[name] = Linear(float(spec[0]), float(spec[1]), int(spec[2]))
        else:
            raise ValueError(f"Schedule {name!r} must be a number, a (start, end, steps) tuple or a callable "
                             f"of the step, got {spec!r}.")
    return out


class LatentScale(Messenger):
    """Multiply the scale of latent (unobserved) sample sites: ``weight`` for all, ``global_weight`` on top for globals.

    Applied around both model and guide, it turns each site's log p - log q into weight x (log p - log q).
    """

    def __init__(self, weight: float = 1.0, global_weight: float = 1.0):
        super().__init__()
        self.weight, self.global_weight = weight, global_weight

    def _process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["infer"].get("is_auxiliary"):
            return
        factor = self.weight * (self.global_weight if msg["name"] in GLOBAL_SITES else 1.0)
        msg["scale"] = factor * msg["scale"]
