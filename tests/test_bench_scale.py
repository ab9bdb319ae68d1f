"""The synthetic screen of ``benchmarks/bench_scale.py`` (issue 15), written in chunks at a tiny size: what is
read back is the screen described (shape, density, integer counts, labels the package accepts)."""

import importlib
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from samsvae_pyro import SAMSVAE
from samsvae_pyro.data import parse_label

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_scale():
    with pytest.MonkeyPatch.context() as patch:  # the benchmarks folder on the path only to import it
        patch.syspath_prepend(str(BENCHMARKS))
        return importlib.import_module("bench_scale")


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_the_screen_is_written_in_chunks_and_reads_back_as_described(bench_scale, tmp_path, monkeypatch, fmt):
    screen = bench_scale.Screen(cells=2_000, genes=150, density=0.1, perturbations=40, seed=3)
    monkeypatch.setattr(bench_scale, "CHUNK_ROWS", 700)  # three appended chunks, the last one short
    path = tmp_path / f"screen.{fmt}"
    record = bench_scale.build(screen, path)
    adata = (ad.read_zarr if fmt == "zarr" else ad.read_h5ad)(path)
    x = adata.X
    assert sp.issparse(x) and x.shape == (2_000, 150) and x.dtype == np.float32
    assert record["nnz"] == x.nnz and abs(x.nnz / (2_000 * 150) - 0.1) < 0.01
    assert x.data.min() >= 1 and np.array_equal(x.data, np.round(x.data))
    p, rate = bench_scale.gene_parameters(screen)
    second = bench_scale.count_chunk(screen, 1, 700, p, rate)
    assert (x[700:1400] != second).nnz == 0  # chunk 1 landed at rows 700..1399

    labels = adata.obs["perturbation"].astype(str)
    members = [parse_label(label, control_label=bench_scale.CONTROL) for label in labels]
    assert abs(np.mean([m == () for m in members]) - 0.05) < 0.02
    assert 0 < np.mean([len(m) == 2 for m in members]) < 0.04
    assert {m for ms in members for m in ms} <= {f"P{t:04d}" for t in range(40)}
    assert set(adata.obs["split"]) == {"train", "val", "test"}
    assert adata.var_names[0] == "G0000" and adata.obs_names.is_unique

    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label=bench_scale.CONTROL,
                          split_key="split")  # the package accepts counts and labels
    assert bench_scale.cached(screen, path) == json.loads(bench_scale.sidecar(path).read_text())
    assert bench_scale.cached(bench_scale.Screen(cells=2_000, genes=150, seed=4), path) is None
