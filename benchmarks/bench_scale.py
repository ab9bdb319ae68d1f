"""Scale benchmark (issue 15): training from an on-disk screen of 2,000,000 cells x 2,000 genes.

The screen is synthetic and written once, in row chunks, without ever holding the count matrix:
integer-valued float32 counts, 10% non-zero (gene g is detected in a cell with probability p_g ~ Beta,
mean ``--density``; a detected count is 1 + Poisson(lambda_g s_c), lambda_g log-normal, s_c a
log-normal cell size), 1,000 single perturbations, 5% "non-targeting" controls and 2% of cells with
one of 100 double perturbations ("A+B"), and a split column (99% train, 0.5% val, 0.5% test). Labels
are random, so the counts carry no perturbation effect: this measures speed and memory, not fit. It is
reused when its sidecar JSON (``<file>.json``: the generator's parameters, build time and peak RSS)
matches the options; ``--rebuild`` writes it again.

Each phase runs in its own process, so that its peak RSS (the kernel's high-water mark, VmHWM) is its
own; times are wall-clock and CPU seconds of the process (``time.process_time``), and "other cores"
is how many cores the rest of the machine kept busy meanwhile (the noise of a shared machine):

- ``raw``: contiguous blocks of 16,384 rows read straight from the file (anndata's sparse dataset),
  the ceiling for any loader;
- ``setup``: ``samsvae_pyro.data.read_backed(path)``, ``SAMSVAE.setup_anndata`` and ``SAMSVAE(adata)``
  (counts validated and per-gene statistics streamed from disk);
- ``epoch``: one epoch of batch-512 training minibatches from the model's loader alone (cells/s), drawn
  as training draws them (``--sampling``; "auto" reads shuffled blocks of consecutive cells from disk);
- ``train``: ``--steps`` training steps from disk, and the same steps on the same batches read into
  memory beforehand ("in memory"), in ``--rounds`` rounds of a disk block and a memory block (order
  alternating, ABBA...; both blocks of a round start from the same parameters with the same seed, so
  they compute the same losses, which is checked); loading overhead = mean s/step from disk / in
  memory - 1, from wall and from CPU time.
  The peak RSS of training is taken over the disk blocks only (the in-memory blocks hold their
  batches). Steps are timed between consecutive steps; the first ``--warmup`` steps and the last
  (which runs the end-of-training validation) of every block are dropped.

``--config default`` is the package's first-run model (n_latent 10, n_hidden 128); ``paper`` is the
paper's Replogle size of ``bench_train.py`` (n_latent 100, n_hidden 400); phases are named
``train:paper`` etc. ``--cold`` evicts the data file from the page cache (``posix_fadvise``) before
each timed phase and disk block, so that reads come from the disk rather than from memory.

Usage
-----
    python benchmarks/bench_scale.py                             # 2M cells: build once, then every phase
    python benchmarks/bench_scale.py --cells 100000 --path /tmp/screen.h5ad   # a small screen
    python benchmarks/bench_scale.py --phases train:paper --steps 100 --rounds 2
    python benchmarks/bench_scale.py --format zarr --phases setup epoch --cold
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from bench_data import release_and_reset_peak, status_kib
from bench_train import N_HIDDEN as PAPER_HIDDEN
from bench_train import N_LATENT as PAPER_LATENT
from bench_train import peak_rss_mib, stamp, summarise

from samsvae_pyro.data.labels import DEFAULT_DELIMITER
from samsvae_pyro.defaults import N_HIDDEN, N_LATENT

DATA_DIR = Path(os.environ.get("SAMSVAE_SCALE_DIR", "/work/scale_data"))
CONTROL = "non-targeting"
SPLITS = {"train": 0.99, "val": 0.005, "test": 0.005}
CHUNK_ROWS = 10_000  # rows generated and appended at a time
RAW_BLOCK = 16_384  # rows per read of the raw phase
CONFIGS = {"default": {"n_latent": N_LATENT, "n_hidden": N_HIDDEN},
           "paper": {"n_latent": PAPER_LATENT, "n_hidden": PAPER_HIDDEN}}
MIB = 2**20
# glibc malloc with fixed thresholds: no adaptive mmap threshold, freed heap kept (see Preloaded)
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**25), "MALLOC_TRIM_THRESHOLD_": str(2**28)}


# ---------------------------------------------------------------------------------------------- the screen
@dataclasses.dataclass(frozen=True)
class Screen:
    """Parameters of the synthetic screen (what the sidecar JSON records)."""

    cells: int = 2_000_000
    genes: int = 2_000
    density: float = 0.1
    perturbations: int = 1_000
    control_fraction: float = 0.05
    double_fraction: float = 0.02
    seed: int = 0

    @property
    def n_pairs(self) -> int:
        return max(1, self.perturbations // 10) if self.double_fraction > 0 else 0

    def default_path(self, fmt: str) -> Path:
        return DATA_DIR / f"screen_{self.cells}x{self.genes}_d{self.density:g}_t{self.perturbations}_s{self.seed}.{fmt}"


def gene_parameters(screen: Screen) -> tuple[np.ndarray, np.ndarray]:
    """(G,) detection probabilities p_g ~ Beta(0.5, 0.5 (1 - density) / density), rescaled to mean ``density``,
    and count rates lambda_g ~ LogNormal(0, 1)."""
    rng = np.random.default_rng([screen.seed, 0])
    a = 0.5
    p = rng.beta(a, a * (1 - screen.density) / screen.density, size=screen.genes)
    p = np.minimum(p * (screen.density / p.mean()), 1.0)  # the mean exactly (up to the clip)
    return p.astype(np.float32), rng.lognormal(0.0, 1.0, size=screen.genes)


def count_chunk(screen: Screen, index: int, n_rows: int, p: np.ndarray, rate: np.ndarray):
    """Chunk ``index`` of the counts: an (n_rows, G) float32 CSR matrix of integer values >= 1 where non-zero."""
    import scipy.sparse as sp

    rng = np.random.default_rng([screen.seed, 1, index])
    rows, cols = np.nonzero(rng.random((n_rows, screen.genes), dtype=np.float32) < p)
    size = rng.lognormal(0.0, 0.3, size=n_rows)
    values = (1 + rng.poisson(rate[cols] * size[rows])).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    return sp.csr_matrix((values, cols.astype(np.int32), indptr), shape=(n_rows, screen.genes))


def annotations(screen: Screen) -> tuple[pd.DataFrame, pd.DataFrame]:
    """obs (perturbation and split labels) and var of the screen."""
    rng = np.random.default_rng([screen.seed, 2])
    singles = [f"P{t:04d}" for t in range(screen.perturbations)]
    pairs = {tuple(sorted(rng.choice(screen.perturbations, size=2, replace=False))) for _ in range(screen.n_pairs)}
    doubles = [f"{singles[a]}{DEFAULT_DELIMITER}{singles[b]}" for a, b in sorted(pairs)]
    kind = rng.choice(3, size=screen.cells, p=[1 - screen.control_fraction - screen.double_fraction,
                                               screen.control_fraction, screen.double_fraction])
    codes = rng.integers(0, screen.perturbations, size=screen.cells)  # singles
    codes[kind == 1] = screen.perturbations  # control
    if doubles:
        codes[kind == 2] = screen.perturbations + 1 + rng.integers(0, len(doubles), size=int((kind == 2).sum()))
    perturbation = pd.Categorical.from_codes(codes.astype(np.int32), [*singles, CONTROL, *doubles])
    split = pd.Categorical.from_codes(rng.choice(len(SPLITS), size=screen.cells, p=list(SPLITS.values())),
                                      list(SPLITS))
    obs = pd.DataFrame({"perturbation": perturbation, "split": split},
                       index=pd.RangeIndex(screen.cells).astype(str).rename(None))
    return obs, pd.DataFrame(index=[f"G{g:04d}" for g in range(screen.genes)])


def write_screen(screen: Screen, path: Path) -> int:
    """Write the screen to ``path`` (.h5ad or .zarr) chunk by chunk; returns the number of non-zeros."""
    import shutil

    obs, var = annotations(screen)
    skeleton = ad.AnnData(obs=obs, var=var)
    zarr = path.suffix == ".zarr"
    if zarr:
        import zarr as zarr_module

        shutil.rmtree(path, ignore_errors=True)
        skeleton.write_zarr(path)
        store = zarr_module.open_group(path, mode="a", use_consolidated=False)
        kwargs = {}
    else:
        import h5py

        skeleton.write_h5ad(path)
        store = h5py.File(path, "a")
        kwargs = {"chunks": (2**20,)}  # anndata makes them resizable
    del skeleton, obs
    p, rate = gene_parameters(screen)
    nnz = 0
    try:
        for index, start in enumerate(range(0, screen.cells, CHUNK_ROWS)):
            chunk = count_chunk(screen, index, min(CHUNK_ROWS, screen.cells - start), p, rate)
            nnz += chunk.nnz
            if index == 0:
                ad.io.write_elem(store, "X", chunk, dataset_kwargs=kwargs)
            else:
                ad.io.sparse_dataset(store["X"]).append(chunk)
    finally:
        if zarr:
            zarr_module.consolidate_metadata(path)  # as anndata writes it
        else:
            store.close()
    return nnz


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def cached(screen: Screen, path: Path) -> dict | None:
    """The sidecar record of ``path`` if the file exists and was built with these parameters."""
    try:
        record = json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    return record if path.exists() and record.get("screen") == dataclasses.asdict(screen) else None


def build(screen: Screen, path: Path) -> dict:
    """Write the screen and its sidecar; returns the sidecar record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar(path).unlink(missing_ok=True)
    start = stamp()
    nnz = write_screen(screen, path)
    end = stamp()
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    record = {"screen": dataclasses.asdict(screen), "nnz": nnz, "density": nnz / (screen.cells * screen.genes),
              "bytes": sum(f.stat().st_size for f in files), "build_s": end[0] - start[0],
              "build_cpu_s": end[1] - start[1], "build_peak_rss_mib": peak_rss_mib()}
    sidecar(path).write_text(json.dumps(record, indent=1))
    return record


def evict(path: Path) -> None:
    """Drop the file(s) at ``path`` from the page cache (written back first), so the next reads hit the disk."""
    for file in [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------- phases
def open_backed(path: Path):
    """(the screen as an on-disk AnnData through the package's reader, its name); before that reader existed,
    the screen read into memory, for developing this benchmark."""
    try:
        from samsvae_pyro.data import read_backed
    except ImportError:
        print("note: samsvae_pyro.data.read_backed not found; reading the screen into memory",
              file=sys.stderr, flush=True)
        return (ad.read_zarr if path.suffix == ".zarr" else ad.read_h5ad)(path), "in memory (no read_backed)"
    return read_backed(path), "read_backed"


def timed(start: tuple, end: tuple) -> dict:
    return {"wall_s": end[0] - start[0], "cpu_s": end[1] - start[1],
            "other_cores": max((end[2] - start[2]) - (end[1] - start[1]), 0.0) / max(end[0] - start[0], 1e-9)}


def setup_model(args, record: dict):
    """Open, register and build the model; adds the times of each part to ``record``."""
    from samsvae_pyro import SAMSVAE

    t0 = stamp()
    adata, record["reader"] = open_backed(args.path)
    t1 = stamp()
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label=CONTROL, split_key="split")
    t2 = stamp()
    model = SAMSVAE(adata, **CONFIGS[args.config])
    t3 = stamp()
    record.update({f"open_{k}": v for k, v in timed(t0, t1).items()})
    record.update({f"setup_anndata_{k}": v for k, v in timed(t1, t2).items()})
    record.update({f"model_{k}": v for k, v in timed(t2, t3).items()})
    record.update({f"setup_{k}": v for k, v in timed(t0, t3).items()})
    return model


def phase_raw(args) -> dict:
    """Contiguous row blocks straight from the file: MB/s and rows/s."""
    if args.cold:
        evict(args.path)
    store = ad.io.sparse_dataset(_open_group(args.path)["X"])
    n, start, nbytes = store.shape[0], stamp(), 0
    for a in range(0, n, RAW_BLOCK):
        block = store[a:min(a + RAW_BLOCK, n)]
        nbytes += block.data.nbytes + block.indices.nbytes + block.indptr.nbytes
    result = timed(start, stamp())
    return result | {"rows_per_s": n / result["wall_s"], "mib_per_s": nbytes / MIB / result["wall_s"]}


def _open_group(path: Path):
    if path.suffix == ".zarr":
        import zarr

        return zarr.open_group(path, mode="r")
    import h5py

    return h5py.File(path, "r")


def phase_setup(args) -> dict:
    record = {"rss_after_imports_mib": status_kib("VmRSS") / 1024}
    if args.cold:
        evict(args.path)
    setup_model(args, record)
    return record


def phase_epoch(args) -> dict:
    record: dict = {}
    model = setup_model(args, record)
    loader = model.loader("train", batch_size=args.batch_size, shuffle=True, seed=0, sampling=args.sampling)
    if args.cold:
        evict(args.path)
    release_and_reset_peak()
    record["rss_before_mib"] = status_kib("VmRSS") / 1024
    start, cells = stamp(), 0
    for batch in loader:
        cells += batch["x"].shape[0]
    record |= timed(start, stamp())
    return record | {"cells": cells, "cells_per_s": cells / record["wall_s"],
                     "phase_peak_rss_mib": status_kib("VmHWM") / 1024}


class Preloaded:
    """A training loader replaying batches already in memory (the baseline of the loading overhead).

    Each batch is served as a fresh copy, as any loader serves new tensors. Even so, with glibc's adaptive
    malloc thresholds the replayed steps took 7-13% more CPU time than the same steps from disk (how the
    step's large temporaries are allocated and faulted in differs); ``--malloc-fixed`` removes that.
    """

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:  # the same batches in every epoch
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        import torch

        for batch in self.batches:
            yield {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def train_block(model, args, seed: int, steps: int, start: dict, replay: bool) -> dict:
    """``steps`` training steps with ``seed`` from the parameters ``start`` and a fresh trainer; mean and median
    s/step and the losses. ``replay``: the same batches are read into memory first (untimed) and replayed."""
    model.model.load_state_dict(start["model"])
    model.guide.load_state_dict(start["guide"])
    model.trainer_state, model.history = None, None
    original = model.loader
    if replay:
        def preloaded(split, **options):  # the training loader the disk block gets, read whole first
            batches = original(split, **options)
            return Preloaded(list(islice(batches, steps))) if isinstance(split, str) and split == "train" else batches

        model.loader = preloaded
    stamps: list = []
    try:
        history = model.train(max_steps=steps, batch_size=args.batch_size, seed=seed, val_every=10**9,
                              progress=False, sampling=args.sampling, callback=lambda _trainer: stamps.append(stamp()))
    finally:
        if replay:
            del model.loader
    kept = stamps[max(args.warmup, 1) - 1:-1]  # the last step also validates
    mean_wall, mean_cpu = np.diff(np.array(kept)[:, :2], axis=0).mean(axis=0)
    return summarise(kept, 0, args.batch_size) | {"mean_s_per_step": mean_wall, "mean_cpu_s_per_step": mean_cpu,
                                                  "losses": history["train_loss"].to_numpy()}


def phase_train(args) -> dict:
    """Rounds of a disk block and an in-memory block on the same batches from the same parameters and seed
    (so both compute the same thing: their losses are compared), in the order ABBA..., against drift."""
    record: dict = {}
    model = setup_model(args, record)
    start = {name: {k: v.detach().clone() for k, v in getattr(model, name).state_dict().items()}
             for name in ("model", "guide")}
    steps = args.steps // args.rounds
    disk, memory, peak = [], [], 0.0
    for seed in range(args.rounds):
        for replay in (False, True) if seed % 2 == 0 else (True, False):
            if args.cold and not replay:
                evict(args.path)
            release_and_reset_peak()
            (memory if replay else disk).append(train_block(model, args, seed, steps, start, replay))
            if not replay:
                peak = max(peak, status_kib("VmHWM") / 1024)
    for name, blocks in (("disk", disk), ("memory", memory)):
        for key in ("mean_s_per_step", "mean_cpu_s_per_step", "s_per_step", "cpu_s_per_step", "other_cores"):
            record[f"{name}_{key}"] = float(np.median([b[key] for b in blocks]))
    pairs = list(zip(disk, memory))
    record["overhead_wall"] = float(np.median([d["mean_s_per_step"] / m["mean_s_per_step"] - 1 for d, m in pairs]))
    record["overhead_cpu"] = float(np.median([d["mean_cpu_s_per_step"] / m["mean_cpu_s_per_step"] - 1
                                              for d, m in pairs]))
    record["rounds"] = [[round(b[key], 4) for b in pair for key in ("mean_s_per_step", "mean_cpu_s_per_step")]
                        for pair in pairs]
    record["same_losses"] = all(np.array_equal(d["losses"], m["losses"]) for d, m in pairs)
    return record | {"disk_cells_per_s": args.batch_size / record["disk_mean_s_per_step"], "train_peak_rss_mib": peak}


def phase_build(args) -> dict:
    return build(screen_of(args), args.path)


PHASES = {"build": phase_build, "raw": phase_raw, "setup": phase_setup, "epoch": phase_epoch, "train": phase_train}


# ---------------------------------------------------------------------------------------------- driver
def screen_of(args) -> Screen:
    return Screen(cells=args.cells, genes=args.genes, density=args.density, perturbations=args.perturbations,
                  seed=args.seed)


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = PHASES[args.worker](args)
    result["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result))


def spawn(phase: str, args) -> dict:
    """Run ``phase`` (``name`` or ``name:config``) in a fresh process; returns its result."""
    name, _, config = phase.partition(":")
    cmd = [sys.executable, __file__, "--worker", name, "--config", config or args.config, "--path", str(args.path),
           "--cells", str(args.cells), "--genes", str(args.genes), "--density", str(args.density),
           "--perturbations", str(args.perturbations), "--seed", str(args.seed), "--steps", str(args.steps),
           "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--sampling", args.sampling] + (["--cold"] if args.cold else [])
    env = dict(os.environ, **(FIXED_MALLOC if args.malloc_fixed else {}))
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def show(phase: str, r: dict) -> str:
    if phase == "build":
        return (f"build: {r['nnz']:,} non-zeros ({r['density']:.2%}), {r['bytes'] / 2**30:.2f} GiB on disk, "
                f"{r['build_s']:.0f} s (CPU {r['build_cpu_s']:.0f} s), peak RSS {r['build_peak_rss_mib']:.0f} MiB")
    peak = f"peak RSS {r['peak_rss_mib']:.0f} MiB"
    if phase.startswith("raw"):
        return f"{phase}: {r['wall_s']:.1f} s, {r['rows_per_s']:,.0f} rows/s, {r['mib_per_s']:.0f} MiB/s, {peak}"
    setup = (f"setup {r['setup_wall_s']:.1f} s (CPU {r['setup_cpu_s']:.1f}; open {r['open_wall_s']:.1f}, "
             f"setup_anndata {r['setup_anndata_wall_s']:.1f}, model {r['model_wall_s']:.1f})")
    if phase.startswith("setup"):
        return f"{phase}: {setup}, {peak} (after imports {r['rss_after_imports_mib']:.0f} MiB)"
    if phase.startswith("epoch"):
        return (f"{phase}: {r['cells']:,} cells in {r['wall_s']:.1f} s (CPU {r['cpu_s']:.1f} s), "
                f"{r['cells_per_s']:,.0f} cells/s, peak RSS during the epoch {r['phase_peak_rss_mib']:.0f} MiB; {setup}")
    return (f"{phase}: disk {r['disk_mean_s_per_step']:.4f} s/step (CPU {r['disk_mean_cpu_s_per_step']:.4f}), "
            f"in memory {r['memory_mean_s_per_step']:.4f} s/step (CPU {r['memory_mean_cpu_s_per_step']:.4f}); "
            f"loading overhead {r['overhead_wall']:+.1%} wall, {r['overhead_cpu']:+.1%} CPU; "
            f"rounds (disk wall, CPU, memory wall, CPU) {r['rounds']}; same losses {r['same_losses']}; "
            f"other cores {r['disk_other_cores']:.1f}; "
            f"peak RSS of the disk blocks {r['train_peak_rss_mib']:.0f} MiB")


FIELDS = ["cells", "genes", "density", "perturbations", "format", "cold", "malloc_fixed", "sampling", "batch_size",
          "threads", "phase", "quantity", "value"]


def write_rows(writer, args, phase: str, result: dict) -> None:
    """Long format: one row per (phase, quantity)."""
    common = [args.cells, args.genes, args.density, args.perturbations, args.path.suffix[1:], args.cold,
              args.malloc_fixed, args.sampling, args.batch_size, args.threads]
    for quantity, value in result.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        writer.writerow([*common, phase, quantity, json.dumps(value) if isinstance(value, (list, dict)) else value])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Screen()
    p.add_argument("--cells", type=int, default=defaults.cells)
    p.add_argument("--genes", type=int, default=defaults.genes)
    p.add_argument("--density", type=float, default=defaults.density)
    p.add_argument("--perturbations", type=int, default=defaults.perturbations)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--format", choices=("h5ad", "zarr"), default="h5ad")
    p.add_argument("--path", type=Path, help=f"the screen's file (default: {DATA_DIR}/screen_<sizes>.<format>)")
    p.add_argument("--rebuild", action="store_true", help="write the screen even if a matching one exists")
    p.add_argument("--phases", nargs="+", default=["raw", "setup", "epoch", "train"],
                   help="of raw, setup, epoch, train, each optionally :default or :paper (the model size)")
    p.add_argument("--config", choices=tuple(CONFIGS), default="default", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=200, help="training steps from disk (and as many in memory)")
    p.add_argument("--rounds", type=int, default=2, help="alternating disk / memory blocks the steps are split into")
    p.add_argument("--warmup", type=int, default=5, help="steps dropped at the start of every block")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--sampling", choices=("auto", "blocks", "cells"), default="auto",
                   help="the training loader's sampling (auto: blocks of consecutive cells for counts on disk)")
    p.add_argument("--malloc-fixed", action="store_true",
                   help="run the phases with glibc's malloc thresholds fixed (MALLOC_MMAP_THRESHOLD_=32 MiB, "
                        "MALLOC_TRIM_THRESHOLD_=256 MiB) instead of adaptive")
    p.add_argument("--cold", action="store_true", help="evict the file from the page cache before each timed part")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale.csv")
    p.add_argument("--append", action="store_true", help="add rows to --out instead of replacing it")
    p.add_argument("--worker", choices=tuple(PHASES), help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    screen = screen_of(args)
    args.path = args.path or screen.default_path(args.format)
    if args.worker:
        return worker(args)
    if args.steps // args.rounds <= args.warmup + 2:
        raise SystemExit(f"--steps {args.steps} over --rounds {args.rounds} leaves no timed steps after the warm-up.")
    record = None if args.rebuild else cached(screen, args.path)
    if record is None:
        print(f"writing the screen to {args.path} ...", file=sys.stderr, flush=True)
        record = spawn("build", args)
    print(show("build", record), flush=True)
    append = args.append and args.out.exists()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a" if append else "w", newline="") as handle:
        writer = csv.writer(handle)
        if not append:
            writer.writerow(FIELDS)
        write_rows(writer, args, "build", record)
        for phase in args.phases:
            result = spawn(phase, args)
            print(show(phase, result), flush=True)
            write_rows(writer, args, phase, result)
            handle.flush()


if __name__ == "__main__":
    main()
