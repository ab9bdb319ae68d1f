"""Several training processes, one loop: Lightning Fabric launches them and carries their collectives.

:class:`~samsvae_pyro.infer.trainer.SVITrainer` stays the only training loop. With ``devices=N`` (or
``num_nodes > 1``) Lightning Fabric starts the processes (``ddp_spawn`` from Python, ``ddp`` under
``torchrun`` or SLURM), places each on its device and initialises the process group (gloo on CPU,
nccl on GPU); every process then runs the same loop with a :class:`Replicas` that averages gradients.

Semantics, exactly those of data-parallel SGD on the full -ELBO:

* each process draws its own shard of every epoch (one seeded permutation of the training cells per
  epoch, shared by all processes; process r takes positions r, r + W, ...), so the W batches of a step
  are disjoint and their union is the batch one process with W times the batch size would draw;
* every batch keeps the full cells-plate size (``n_cells`` is the number of training cells), so each
  process's loss is an unbiased estimate of the whole -ELBO per cell;
* the gradients are averaged over processes (one all-reduce of all gradients and the loss per step),
  so the parameters and the Adam state stay identical on every process without ever being copied;
* the global sites (E, mask, mask_prob) are sampled **independently on each process** (process r seeds
  its stream with ``(seed, r)``) and the average of the W gradients is the reduction: each process's
  estimate is unbiased, so their mean is the gradient of a W-particle estimate of the global terms.
  Sampling them identically on every process would also be unbiased, but it needs a second random
  stream per process to keep the local draws (z_basal) independent, and gives a noisier estimate.

Validation runs on each process's shard of the validation cells and the sums are reduced, so the
best-checkpoint choice, early stopping and the divergence check see the same numbers everywhere.
The parameters are not wrapped in ``DistributedDataParallel``: Pyro calls the model and guide directly
(no ``forward``), so the all-reduce is done here explicitly; FSDP and other sharded strategies are not
supported (the models are small; data parallelism is what large screens need).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork")


def launched_externally() -> bool:
    """Whether this process was started by ``torchrun`` or SLURM (one process per device already exists)."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def launch(function: Callable[..., Any], *args: Any, devices: int = 1, accelerator: str = "auto",
           strategy: str = "auto", num_nodes: int = 1) -> Any:
    """Run ``function(replicas, *args)`` in every training process; returns process 0's result.

    ``strategy="auto"``: ``"ddp"`` when launched by ``torchrun``/SLURM, else ``"ddp_spawn"`` (new
    processes that receive pickled arguments, so ``function`` and ``args`` must be picklable).
    """
    from lightning.fabric import Fabric  # Lightning is slow to import; single-device training never needs it

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not supported; choose one of {list(STRATEGIES)} "
                         "(data parallel: every process holds all parameters).")
    if strategy == "auto":
        strategy = "ddp" if launched_externally() else "ddp_spawn"
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes)
    if strategy == "ddp" and launched_externally():
        fabric.launch()
        return function(Replicas(fabric), *args)
    return fabric.launch(_in_process, function, *args)


def _in_process(fabric, function: Callable[..., Any], *args: Any) -> Any:
    """One spawned process: run ``function``, wait for the others, then close the process group, so that no
    communication thread is still running when the process exits (gloo aborts the process otherwise)."""
    try:
        result = function(Replicas(fabric), *args)
        fabric.barrier()
        return result
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class Replicas:
    """The collectives one training process needs: rank, device, gradient and value averages, RNG gathering."""

    def __init__(self, fabric):
        self.fabric = fabric
        self.rank, self.world_size, self.device = fabric.global_rank, fabric.world_size, fabric.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter], loss: float | Tensor) -> Tensor:
        """Average every gradient (and the loss) over processes in one all-reduce; returns the mean loss
        (a 0-dim float64 tensor, averaged in float32) without a copy to the host.

        A parameter without a gradient in a process counts as a zero gradient there (and gets the average),
        so every process takes the same optimizer step even when one failed before its backward pass.
        """
        with_grad = list(parameters)
        for p in with_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in with_grad]
                         + [torch.as_tensor(loss, dtype=torch.float32, device=self.device).reshape(1)])
        flat = self.fabric.all_reduce(flat, reduce_op="mean")
        offset = 0
        for p in with_grad:
            p.grad.copy_(flat[offset: offset + p.numel()].view_as(p.grad))
            offset += p.numel()
        return flat[-1].double()

    def sum(self, values: Tensor) -> Tensor:
        """Element-wise sum over processes."""
        return self.fabric.all_reduce(values.to(self.device), reduce_op="sum")

    def gather_rng(self) -> list[Tensor]:
        """Every process's torch CPU random state, in rank order (for an exact resume)."""
        state = torch.get_rng_state().to(device=self.device, dtype=torch.int64)  # gloo gathers no uint8
        states = self.fabric.all_gather(state)  # (W, S)
        return [row.to(device="cpu", dtype=torch.uint8) for row in states]

