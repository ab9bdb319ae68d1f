"""Benchmark of the data layer on a large sparse screen.

Builds a cells x genes CSR count matrix (default 200,000 x 2,000, 10% non-zero, integer counts,
1,000 perturbations plus controls), then measures time and peak memory of

1. ``build_perturbation_data`` (validation, dosages, library sizes, training statistics);
2. one full epoch of ``MinibatchLoader`` over all cells (batch 512, shuffled).

Memory, two ways, both counting only what a step adds beyond the generated input:

- peak RSS increment: before the step, freed heap memory is returned to the OS
  (``malloc_trim(0)``) and the kernel's peak-RSS counter is reset (writing "5" to
  /proc/self/clear_refs, Linux); the increment is VmHWM after the step minus VmRSS before it;
- tracemalloc peak: the step is run a second time under tracemalloc, which sees numpy's and
  scipy's array allocations.

Targets: increment < 2 x the CSR size; one epoch < 10 s.

Run from the repository root::

    python benchmarks/bench_data.py            # full size
    python benchmarks/bench_data.py --cells 20000  # quick
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from samsvae_pyro.data import MinibatchLoader, build_perturbation_data

MIB = 2**20


def make_screen(
    n_cells: int, n_genes: int, n_perturbations: int, *, density: float = 0.1, seed: int = 0
) -> AnnData:
    """Random CSR float32 integer counts (1 + Geometric) and uniform perturbation labels."""
    rng = np.random.default_rng(seed)
    data, indices, row_nnz = [], [], []
    for start in range(0, n_cells, 10_000):
        mask = rng.random((min(10_000, n_cells - start), n_genes), dtype=np.float32) < density
        rows, cols = np.nonzero(mask)
        indices.append(cols.astype(np.int32))
        data.append(rng.geometric(0.3, size=len(cols)).astype(np.float32))
        row_nnz.append(mask.sum(axis=1))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_nnz))]).astype(np.int64)
    counts = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), indptr), shape=(n_cells, n_genes)
    )
    names = np.array([f"PERT{t:04d}" for t in range(n_perturbations)] + ["control"])
    labels = names[rng.integers(0, n_perturbations + 1, size=n_cells)]
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(n_cells)]
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return AnnData(counts, obs=obs, var=var)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def release_and_reset_peak() -> bool:
    """Return freed heap memory to the OS, then reset the peak-RSS counter (Linux only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(step: Callable[[], object]) -> tuple[object, float, float | None, float]:
    """Run ``step`` twice: timed with its peak RSS increment, then under tracemalloc.

    Returns (result, seconds, peak RSS increment in MiB or None, tracemalloc peak in MiB).
    """
    reset = release_and_reset_peak()
    before = status_kib("VmRSS") if reset else 0
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    rss = (status_kib("VmHWM") - before) / 1024 if reset else None
    gc.collect()
    tracemalloc.start()
    step()
    traced = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    return result, seconds, rss, traced


def report(name: str, seconds: float, rss: float | None, traced: float, csr_mib: float) -> None:
    rss_text = "n/a" if rss is None else f"+{rss:.1f} MiB ({rss / csr_mib:.2f} x CSR)"
    print(
        f"{name}: {seconds:.2f} s; peak RSS {rss_text}; "
        f"tracemalloc peak {traced:.1f} MiB ({traced / csr_mib:.2f} x CSR)"
    )


def run_epoch(loader: MinibatchLoader) -> int:
    n = 0
    for batch in loader:
        n += batch["x"].shape[0]
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--perturbations", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    start = time.perf_counter()
    adata = make_screen(args.cells, args.genes, args.perturbations)
    x = adata.X
    csr_mib = (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / MIB
    print(f"input: {args.cells} x {args.genes}, nnz {x.nnz} ({x.nnz / np.prod(x.shape):.1%}),")
    print(f"       CSR size {csr_mib:.1f} MiB, generated in {time.perf_counter() - start:.1f} s")

    data, seconds, rss, traced = measure(
        lambda: build_perturbation_data(adata, perturbation_key="perturbation")
    )
    report(f"build_perturbation_data (T = {data.n_perturbations})", seconds, rss, traced, csr_mib)
    loader = MinibatchLoader(data, np.arange(data.n_cells), batch_size=args.batch_size)
    n, seconds, rss, traced = measure(lambda: run_epoch(loader))
    name = f"one epoch, {len(loader)} batches of {args.batch_size} ({n} cells)"
    report(name, seconds, rss, traced, csr_mib)


if __name__ == "__main__":
    main()
