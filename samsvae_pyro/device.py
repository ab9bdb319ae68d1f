"""Device choice, made once per model object, and seeded random streams on that device."""

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
