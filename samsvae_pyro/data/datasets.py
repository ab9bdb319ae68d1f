"""The paper's datasets (docs/model.md, section 6): resumable verified downloads, schema-checked loaders,
and a streaming build of the Replogle "filtered" set from the genome-wide file.

Files and what is known about them (:data:`REMOTE_FILES`):

- Norman 2019 (sc-pert "Norman processed" h5ad): figshare file 34027562, 1,703,064,678 bytes,
  md5 unknown (not verified).
- Replogle 2022 K562 genome-wide raw single-cell h5ad (K562_gwps_raw_singlecell_01.h5ad):
  figshare-plus file 35775507, about 66 GB, exact size and md5 unknown here, so the download is
  checked against the size the server announces.

The paper's own "filtered" Replogle file is not public; :func:`build_replogle_filtered`
rebuilds a set of the same shape from the genome-wide file with documented selection rules
(or with target/gene lists you supply).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
from anndata import AnnData

from samsvae_pyro._typing import DatasetName
from samsvae_pyro.data.design import dosage_columns_with_prefix
from samsvae_pyro.data.labels import format_names
from samsvae_pyro.data.transforms import TARGET_LIBRARY

_BLOCK = 1 << 20  # download read size
_TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A download that could not be completed or verified; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: cache file name, URL, and byte size / md5 where known (else None)."""

    filename: str
    url: str
    size: int | None
    md5: str | None


REMOTE_FILES: dict[str, RemoteFile] = {
    "norman": RemoteFile(
        "norman_2019_sc_pert.h5ad",
        "https://figshare.com/ndownloader/files/34027562",
        1_703_064_678,
        None,
    ),
    "replogle": RemoteFile(
        "K562_gwps_raw_singlecell_01.h5ad",
        "https://plus.figshare.com/ndownloader/files/35775507",
        None,
        None,
    ),
}


def default_cache_dir() -> Path:
    """``$SAMSVAE_CACHE`` if set, else ``~/.cache/samsvae_pyro``."""
    return Path(os.environ.get("SAMSVAE_CACHE") or Path.home() / ".cache" / "samsvae_pyro")


# --- download


def download_dataset(
    name: DatasetName, *, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Download a paper file into the cache (once), resuming a partial download.

    The file is streamed to ``<file>.part``; an existing ``.part`` is resumed with an HTTP
    Range request (restarted from zero if the server ignores the range). The result is renamed
    into place only after its size (and md5, where known) are verified.

    Parameters
    ----------
    name
        ``"norman"`` or ``"replogle"`` (the genome-wide file; see
        :func:`build_replogle_filtered`).
    cache_dir
        Directory of the cache; default :func:`default_cache_dir`.

    Returns
    -------
    Path of the verified file. Raises :class:`DownloadError` saying what to delete or retry.
    """
    if name not in REMOTE_FILES:
        raise ValueError(f"name={name!r} is not one of {tuple(REMOTE_FILES)}.")
    remote = REMOTE_FILES[name]
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.filename
    if target.exists():
        _check_size(target, remote.size, partial=False)
        return target
    part = target.with_name(target.name + ".part")
    expected = _fetch(remote.url, part, remote.size)
    _check_size(part, expected, partial=True)
    if remote.md5 is not None and _md5(part) != remote.md5:
        raise DownloadError(
            f"{part} does not match md5 {remote.md5}: delete it and download again."
        )
    os.replace(part, target)
    return target


def _fetch(url: str, part: Path, size: int | None) -> int | None:
    """Stream ``url`` into ``part`` from its current length; return the expected total size."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset >= size:
        return size
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            resumed = offset > 0 and getattr(response, "status", None) == 206
            announced = _announced_size(response.headers, offset if resumed else 0)
            with open(part, "ab" if resumed else "wb") as out:
                shutil.copyfileobj(response, out, _BLOCK)
    except (OSError, urllib.error.URLError) as error:
        raise DownloadError(
            f"Download of {url} failed ({error}); the partial file {part} is kept: call "
            "download_dataset again to resume (or delete it to start over)."
        ) from error
    return size if size is not None else announced


def _announced_size(headers: Mapping[str, str], offset: int) -> int | None:
    """Total size from Content-Range ("bytes a-b/total") or offset + Content-Length."""
    match = re.search(r"/(\d+)$", headers.get("Content-Range") or "")
    if match:
        return int(match.group(1))
    length = headers.get("Content-Length")
    return offset + int(length) if length else None


def _check_size(path: Path, expected: int | None, *, partial: bool) -> None:
    actual = path.stat().st_size
    if expected is None or actual == expected:
        return
    if partial and actual < expected:
        raise DownloadError(
            f"Incomplete download: {path} has {actual} of {expected} bytes. Call "
            "download_dataset again to resume."
        )
    raise DownloadError(
        f"{path} has {actual} bytes but {expected} were expected: delete it and call "
        "download_dataset again."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- loaders


def _require(adata: AnnData, path: str | os.PathLike, dataset: str, **keys: Sequence[str]) -> None:
    """Raise if any of ``keys`` (obs=..., var=..., layers=...) is missing from ``adata``."""
    missing = [
        f"{slot}[{k!r}]"
        for slot, names in keys.items()
        for k in names
        if k not in getattr(adata, slot)
    ]
    if missing:
        raise ValueError(
            f"{path} is missing {', '.join(missing)}, which the {dataset} schema requires. Is it "
            "the right file (see samsvae_pyro.data.datasets)? If it is a damaged download, "
            "delete it and call download_dataset again."
        )


def load_norman(path: str | os.PathLike) -> AnnData:
    """Norman 2019 (CRISPRa, singles and doubles) restricted to its highly variable genes.

    The returned AnnData keeps the file's log-normalised X and raw counts in
    ``layers["counts"]`` (sparse), and obs ``guide_identity``, ``guide_ids``,
    ``perturbation_name`` ("control", "CEBPB", "CBL+CNN1") and the 0/1 ``guide_<GENE>`` columns.
    Build the design with either::

        build_perturbation_data(adata, dosage_columns="guide_", layer="counts")
        build_perturbation_data(adata, perturbation_key="perturbation_name", layer="counts")

    (control label "control", delimiter "+"); add ``split_key`` after computing a split with
    :func:`~samsvae_pyro.data.norman_ood_split` on ``obs["perturbation_name"]``.
    """
    adata = anndata.read_h5ad(path)
    _require(
        adata,
        path,
        "norman",
        obs=("guide_identity", "guide_ids", "perturbation_name"),
        var=("highly_variable",),
        layers=("counts",),
    )
    if not dosage_columns_with_prefix(adata.obs, "guide_"):
        raise ValueError(
            f"{path} has no 0/1 obs columns guide_<GENE>, which the norman schema requires."
        )
    return adata[:, adata.var["highly_variable"].to_numpy(dtype=bool)].copy()


def load_replogle(path: str | os.PathLike) -> AnnData:
    """Replogle 2022 K562 "filtered" set (paper's or :func:`build_replogle_filtered`'s).

    Dense float32 raw counts in X, obs ``sgID_AB`` (guide pair, the perturbation label) and
    ``gene`` (target gene), var ``gene_name``, and ``uns["pathways"]`` (complex -> genes) when
    present. Build the design with::

        build_perturbation_data(adata, perturbation_key="sgID_AB", control_pattern="non-targeting")
    """
    adata = anndata.read_h5ad(path)
    _require(adata, path, "replogle", obs=("sgID_AB", "gene"), var=("gene_name",))
    return adata


# --- Replogle filtered build


def build_replogle_filtered(
    gwps_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    target_genes: Sequence[str] | None = None,
    n_control_cells: int = 2000,
    gene_list: Sequence[str] | None = None,
    n_targets: int = 681,
    n_genes: int = 1187,
    min_cells: int = 25,
    chunk_size: int = 2048,
    control_pattern: str = "non-targeting",
    pathways: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> Path:
    """Build the Replogle K562 "filtered" h5ad from the genome-wide file, streaming its X.

    The dense X of ``gwps_path`` (1,989,578 x 8,248 float32) is read in row chunks of
    ``chunk_size`` rows with h5py (about 65 MB each at the default), never whole. Output: the
    cells of the chosen target genes (all their guide pairs) plus ``n_control_cells`` random
    control cells (``sgID_AB`` containing ``control_pattern``, drawn with ``seed``), the chosen
    genes, in file order; obs and var columns as in the input, and ``uns["pathways"]`` =
    ``pathways`` (empty if not given).

    The paper's exact target and gene lists are not published with the paper, so when
    ``target_genes`` / ``gene_list`` are None they are chosen by these rules, from one extra
    streaming pass computing each target's mean of y = log(1 + 1e4 x / sum_g x) (memory: about
    n_targets_in_file x G float64, ~650 MB for the genome-wide file):

    - genes (by ``var["gene_name"]``): the ``n_genes`` genes with the largest variance, across
      targets with at least ``min_cells`` cells, of the target mean minus the control mean
      (the most perturbation-responsive genes);
    - targets (by ``obs["gene"]``): among targets with at least ``min_cells`` cells, the
      ``n_targets`` with the largest mean over the chosen genes of ((target mean - control
      mean) / control sd)^2, a standardised effect energy ("strongly perturbing").

    These rules approximate, not reproduce, the paper's selection (Replogle et al.'s energy
    test); supply the lists to match a published set exactly.

    Returns
    -------
    ``out_path``.
    """
    obs, var = _read_annotations(gwps_path)
    control = obs["sgID_AB"].astype(str).str.contains(control_pattern, regex=False).to_numpy()
    groups = np.where(control, None, obs["gene"].astype(str).to_numpy(dtype=object))
    codes, names = pd.factorize(pd.Series(groups, dtype=object))  # controls get code -1
    with h5py.File(gwps_path, "r") as handle:
        x = _dense_dataset(handle, gwps_path)
        need_stats = target_genes is None or gene_list is None
        stats = _group_stats(x, codes, len(names), chunk_size) if need_stats else None
        genes = _pick_genes(var, gene_list, stats, n_genes, min_cells)
        targets = _pick_targets(names, target_genes, stats, genes, n_targets, min_cells)
        rows = _pick_rows(codes, names, targets, control, n_control_cells, seed)
        counts = _read_rows(x, rows, genes, chunk_size)
    adata = AnnData(counts, obs=_subset(obs, rows), var=_subset(var, genes))
    adata.uns["pathways"] = {k: list(v) for k, v in (pathways or {}).items()}
    adata.write_h5ad(out_path)
    return Path(out_path)


def _subset(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """Rows of ``frame`` at ``positions``, categorical columns without unused categories."""
    out = frame.iloc[positions].copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].cat.remove_unused_categories()
    return out


def _read_annotations(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    backed = anndata.read_h5ad(path, backed="r")
    try:
        _require(backed, path, "replogle genome-wide", obs=("sgID_AB", "gene"), var=("gene_name",))
        return backed.obs.copy(), backed.var.copy()
    finally:
        backed.file.close()


def _dense_dataset(handle: h5py.File, path: str | os.PathLike) -> h5py.Dataset:
    x = handle["X"]
    if not isinstance(x, h5py.Dataset):
        raise ValueError(
            f"{path} stores X sparse; build_replogle_filtered expects the dense genome-wide file."
        )
    return x


@dataclass
class _GroupStats:
    """Per-target means of y = log1p(CP10k), sizes, and the control mean and sd (over genes)."""

    means: np.ndarray  # (n_targets_in_file, G)
    sizes: np.ndarray  # (n_targets_in_file,)
    control_mean: np.ndarray  # (G,)
    control_sd: np.ndarray  # (G,)


def _group_stats(x: h5py.Dataset, codes: np.ndarray, n_groups: int, chunk_size: int) -> _GroupStats:
    sums = np.zeros((n_groups + 1, x.shape[1]))  # last row: controls
    control_sq = np.zeros(x.shape[1])
    groups = np.where(codes < 0, n_groups, codes)
    for start in range(0, x.shape[0], chunk_size):
        block = x[start : start + chunk_size]  # (chunk, G) float32
        y = np.log1p(TARGET_LIBRARY * block / np.maximum(block.sum(axis=1, keepdims=True), 1.0))
        g = groups[start : start + chunk_size]
        order = np.argsort(g, kind="stable")
        present, first = np.unique(g[order], return_index=True)
        sums[present] += np.add.reduceat(y[order], first, axis=0)
        control_sq += (y[g == n_groups].astype(np.float64) ** 2).sum(axis=0)
    sizes = np.bincount(groups, minlength=n_groups + 1)
    means = sums / np.maximum(sizes, 1)[:, None]
    control_var = control_sq / max(sizes[-1], 1) - means[-1] ** 2
    return _GroupStats(means[:-1], sizes[:-1], means[-1], np.sqrt(np.maximum(control_var, 1e-8)))


def _pick_genes(
    var: pd.DataFrame,
    gene_list: Sequence[str] | None,
    stats: _GroupStats | None,
    n_genes: int,
    min_cells: int,
) -> np.ndarray:
    """Sorted column positions of the chosen genes."""
    if gene_list is None:
        shifts = stats.means[stats.sizes >= min_cells] - stats.control_mean
        return np.sort(np.argsort(-shifts.var(axis=0), kind="stable")[:n_genes])
    position = pd.Index(var["gene_name"].astype(str)).get_indexer(list(gene_list))
    if (position < 0).any():
        missing = [g for g, p in zip(gene_list, position, strict=True) if p < 0]
        raise ValueError(f"gene_list has genes not in var['gene_name']: {format_names(missing)}.")
    return np.sort(position)


def _pick_targets(
    names: pd.Index,
    target_genes: Sequence[str] | None,
    stats: _GroupStats | None,
    genes: np.ndarray,
    n_targets: int,
    min_cells: int,
) -> list[str]:
    if target_genes is not None:
        missing = sorted(set(target_genes) - set(names))
        if missing:
            raise ValueError(
                f"target_genes has targets without cells in obs['gene']: {format_names(missing)}."
            )
        return list(target_genes)
    z = (stats.means[:, genes] - stats.control_mean[genes]) / stats.control_sd[genes]
    score = np.where(stats.sizes >= min_cells, (z**2).mean(axis=1), -np.inf)
    best = np.argsort(-score, kind="stable")[: min(n_targets, int(np.isfinite(score).sum()))]
    return [names[i] for i in best]


def _pick_rows(
    codes: np.ndarray,
    names: pd.Index,
    targets: list[str],
    control: np.ndarray,
    n_control: int,
    seed: int,
) -> np.ndarray:
    """Sorted rows: every cell of the targets plus ``n_control`` random control cells."""
    control_rows = np.flatnonzero(control)
    if n_control > len(control_rows):
        raise ValueError(
            f"n_control_cells={n_control} exceeds the {len(control_rows)} control cells "
            "of the file."
        )
    chosen = np.random.default_rng(seed).choice(control_rows, size=n_control, replace=False)
    target_rows = np.flatnonzero(np.isin(codes, names.get_indexer(targets)))
    return np.sort(np.concatenate([target_rows, chosen]))


def _read_rows(x: h5py.Dataset, rows: np.ndarray, genes: np.ndarray, chunk_size: int) -> np.ndarray:
    """(len(rows), len(genes)) float32 values of sorted ``rows``, read chunk by chunk."""
    out = np.empty((len(rows), len(genes)), dtype=np.float32)
    bounds = np.searchsorted(rows, np.arange(0, x.shape[0] + chunk_size, chunk_size))
    for lo, hi in pairwise(bounds):
        if hi > lo:
            block = x[rows[lo] : rows[hi - 1] + 1]
            out[lo:hi] = block[rows[lo:hi] - rows[lo]][:, genes]
    return out
