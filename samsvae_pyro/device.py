"""Device and CPU thread choice, made once per model object, and seeded random streams on that device.

Threads: a model runs its torch work with :data:`DEFAULT_THREADS` = 1 intra-op thread unless told
otherwise. Torch's own default (one thread per core) made a training step 20 to 40 times slower on a
shared 2-core machine, and a steady outside load slows a multi-threaded step far more than a
single-threaded one (OpenMP threads wait for each other on every one of the many small operations of
a step); one thread is never much slower than the best setting at the sizes this package trains
(measurements: ``benchmarks/threads.py``, README "Speed and threads"). The count is set for the
duration of each call and restored afterwards, so the rest of the user's process keeps its setting.
"""

from __future__ import annotations

import torch


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto": CUDA when available, else CPU; otherwise the given device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use device='cpu' or 'auto'.")
    return device


DEFAULT_THREADS = 1


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is ``None`` (keep torch's setting) or a positive int, else a ValueError."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive integer (torch intra-op threads), or None to "
                         "keep torch's current setting.")
    return threads


class torch_threads:
    """Run a block with ``threads`` torch intra-op threads, then restore the previous count (``None``: unchanged)."""

    def __init__(self, threads: int | None):
        self.threads, self.previous = check_threads(threads), None

    def __enter__(self):
        if self.threads is not None:
            self.previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        if self.previous is not None:
            torch.set_num_threads(self.previous)
        return False


class seeded:
    """Run a block with its own seeded random stream, leaving the global stream untouched."""

    def __init__(self, seed: int, device: torch.device):
        self.fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        self.seed = seed

    def __enter__(self):
        self.fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self.fork.__exit__(*exc)
