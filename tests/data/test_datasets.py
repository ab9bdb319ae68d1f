"""Downloads (local file:// URLs and a fake opener, never the network), loaders on small files
with the real schemas, and the streaming Replogle build."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request

import numpy as np
import pytest
import scipy.sparse as sp

from samsvae_pyro.data import (
    build_perturbation_data,
    build_replogle_filtered,
    datasets,
    download_dataset,
    load_norman,
    load_replogle,
    norman_ood_split,
)
from samsvae_pyro.data.datasets import DownloadError, RemoteFile
from tests.schema_files import write_norman_file, write_replogle_file

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
PAYLOAD_SIZE = len(PAYLOAD)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any attempt to open a non-file URL."""
    real = urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert url.startswith("file:"), f"test tried to reach the network: {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """Point the "norman" entry at a local file; return (cache dir, target path)."""
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)

    def use(size=PAYLOAD_SIZE, md5=PAYLOAD_MD5, url=None):
        entry = RemoteFile("norman.h5ad", url or source.as_uri(), size, md5)
        monkeypatch.setitem(datasets.REMOTE_FILES, "norman", entry)
        return tmp_path / "cache", tmp_path / "cache" / "norman.h5ad"

    return use


def test_download_verifies_and_renames(remote):
    cache, target = remote()
    assert download_dataset("norman", cache_dir=cache) == target
    assert target.read_bytes() == PAYLOAD
    assert not target.with_name("norman.h5ad.part").exists()


def test_existing_file_is_reused(remote):
    cache, target = remote(url="file:///nonexistent/never-read")
    target.parent.mkdir()
    target.write_bytes(PAYLOAD)
    assert download_dataset("norman", cache_dir=cache) == target


def test_default_cache_dir_from_environment(remote, monkeypatch, tmp_path):
    remote()
    monkeypatch.setenv("SAMSVAE_CACHE", str(tmp_path / "env-cache"))
    assert download_dataset("norman") == tmp_path / "env-cache" / "norman.h5ad"


class _RangeResponse(io.BytesIO):
    """Fake HTTP response honouring a Range request (status 206)."""

    def __init__(self, request):
        self.range = request.headers.get("Range")
        start = int(self.range.split("=")[1].rstrip("-"))
        super().__init__(PAYLOAD[start:])
        self.status = 206
        self.headers = {"Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"}


def test_partial_download_resumes_with_range(remote, monkeypatch):
    cache, target = remote(url="https://example.invalid/file", size=None, md5=None)
    part = target.with_name("norman.h5ad.part")
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:1000])
    seen = []

    def opener(request, timeout=None):
        seen.append(_RangeResponse(request))
        return seen[-1]

    monkeypatch.setattr(urllib.request, "urlopen", opener)
    assert download_dataset("norman", cache_dir=cache).read_bytes() == PAYLOAD
    assert seen[0].range == "bytes=1000-"


def test_server_ignoring_range_restarts(remote):
    cache, target = remote()
    part = target.with_name("norman.h5ad.part")
    part.parent.mkdir()
    part.write_bytes(b"garbage")  # file:// ignores Range: the download must start over
    assert download_dataset("norman", cache_dir=cache).read_bytes() == PAYLOAD


def test_incomplete_download_is_kept_for_resume(remote):
    cache, target = remote(size=len(PAYLOAD) + 10, md5=None)
    with pytest.raises(DownloadError, match="Incomplete download.*again to resume"):
        download_dataset("norman", cache_dir=cache)
    assert target.with_name("norman.h5ad.part").stat().st_size == len(PAYLOAD)
    assert not target.exists()


def test_oversized_partial_says_delete(remote):
    cache, target = remote(size=100, md5=None)
    part = target.with_name("norman.h5ad.part")
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:200])
    with pytest.raises(DownloadError, match="delete it"):
        download_dataset("norman", cache_dir=cache)
    assert not target.exists()


def test_checksum_mismatch(remote):
    cache, target = remote(md5="0" * 32)
    with pytest.raises(DownloadError, match="md5.*delete it"):
        download_dataset("norman", cache_dir=cache)
    assert not target.exists()


def test_network_failure_keeps_partial(remote, monkeypatch):
    cache, _ = remote(url="https://example.invalid/file")

    def opener(request, timeout=None):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(urllib.request, "urlopen", opener)
    with pytest.raises(DownloadError, match="no route.*resume"):
        download_dataset("norman", cache_dir=cache)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="'adamson'"):
        download_dataset("adamson")


def test_registered_files_are_the_papers():
    norman, replogle = datasets.REMOTE_FILES["norman"], datasets.REMOTE_FILES["replogle"]
    assert norman.url.endswith("/34027562") and norman.size == 1_703_064_678
    assert (
        replogle.url.endswith("/35775507")
        and replogle.filename == "K562_gwps_raw_singlecell_01.h5ad"
    )


# ----------------------------------------------------------------------------- Norman schema

def test_load_norman_both_label_sources_agree(tmp_path):
    original = write_norman_file(tmp_path / "norman.h5ad")
    adata = load_norman(tmp_path / "norman.h5ad")
    assert list(adata.var_names) == ["GENE0", "GENE2", "GENE4", "GENE6"]
    assert sp.issparse(adata.layers["counts"])
    np.testing.assert_array_equal(
        adata.layers["counts"].toarray(), original.layers["counts"][:, ::2].toarray()
    )
    adata.obs["split"] = norman_ood_split(adata.obs["perturbation_name"], fraction=1.0)
    by_columns = build_perturbation_data(
        adata, dosage_columns="guide_", layer="counts", split_key="split"
    )
    by_labels = build_perturbation_data(
        adata, perturbation_key="perturbation_name", layer="counts", split_key="split"
    )
    assert by_columns.vocabulary.perturbations == ("CBL", "CEBPB", "CNN1")
    assert (by_columns.dosages != by_labels.dosages).nnz == 0
    np.testing.assert_array_equal(by_columns.labels, by_labels.labels)


def test_load_norman_names_missing_keys(tmp_path):
    adata = write_norman_file(tmp_path / "norman.h5ad")
    del adata.obs["guide_ids"]
    del adata.layers["counts"]
    adata.write_h5ad(tmp_path / "broken.h5ad")
    with pytest.raises(ValueError, match=r"obs\['guide_ids'\].*layers\['counts'\]"):
        load_norman(tmp_path / "broken.h5ad")


# ----------------------------------------------------------------------------- Replogle schema


def test_load_replogle_and_build_design(tmp_path):
    write_replogle_file(tmp_path / "replogle.h5ad")
    adata = load_replogle(tmp_path / "replogle.h5ad")
    assert list(adata.uns["pathways"]["EXOSOME"]) == ["G1", "G2"]
    data = build_perturbation_data(
        adata, perturbation_key="sgID_AB", control_pattern="non-targeting"
    )
    assert data.control_mask.sum() == 60
    assert data.n_perturbations == 16  # two guide pairs per target, labels taken whole
    assert all("+" in p for p in data.vocabulary.perturbations)


def test_load_replogle_names_missing_keys(tmp_path):
    adata = write_replogle_file(tmp_path / "replogle.h5ad")
    del adata.var["gene_name"]
    adata.write_h5ad(tmp_path / "broken.h5ad")
    with pytest.raises(ValueError, match=r"var\['gene_name'\]"):
        load_replogle(tmp_path / "broken.h5ad")


def test_build_replogle_filtered_with_lists(tmp_path):
    full = write_replogle_file(tmp_path / "gwps.h5ad")
    out = build_replogle_filtered(
        tmp_path / "gwps.h5ad", tmp_path / "filtered.h5ad",
        target_genes=["T1", "T5"], gene_list=["G7", "G2", "G3"], n_control_cells=10,
        chunk_size=13, pathways={"MEDIATOR_COMPLEX": ["G2"]},
    )  # fmt: skip
    filtered = load_replogle(out)
    keep = np.isin(full.obs["gene"], ["T1", "T5"])
    assert filtered.n_obs == keep.sum() + 10
    assert (filtered.obs["gene"] == "non-targeting").sum() == 10
    assert list(filtered.var["gene_name"]) == ["G2", "G3", "G7"]
    np.testing.assert_array_equal(
        filtered.X, full[filtered.obs_names, ["ENSG00002", "ENSG00003", "ENSG00007"]].X
    )
    assert list(filtered.uns["pathways"]["MEDIATOR_COMPLEX"]) == ["G2"]


def test_build_replogle_filtered_selection_rules(tmp_path):
    write_replogle_file(tmp_path / "gwps.h5ad")
    out = build_replogle_filtered(
        tmp_path / "gwps.h5ad", tmp_path / "filtered.h5ad",
        n_targets=3, n_genes=5, n_control_cells=20, min_cells=5, chunk_size=17, seed=3,
    )  # fmt: skip
    filtered = load_replogle(out)
    assert set(filtered.obs["gene"]) == {"T0", "T1", "T2", "non-targeting"}
    assert list(filtered.var["gene_name"]) == [f"G{j}" for j in range(5)]


def test_build_replogle_filtered_rejects_unknown_lists(tmp_path):
    write_replogle_file(tmp_path / "gwps.h5ad")
    with pytest.raises(ValueError, match="'G99'"):
        build_replogle_filtered(
            tmp_path / "gwps.h5ad", tmp_path / "o.h5ad", gene_list=["G99"], target_genes=["T1"]
        )
    with pytest.raises(ValueError, match="'T99'"):
        build_replogle_filtered(
            tmp_path / "gwps.h5ad", tmp_path / "o.h5ad", gene_list=["G1"], target_genes=["T99"]
        )
    with pytest.raises(ValueError, match="n_control_cells=500 exceeds the 60"):
        build_replogle_filtered(
            tmp_path / "gwps.h5ad",
            tmp_path / "o.h5ad",
            gene_list=["G1"],
            target_genes=["T1"],
            n_control_cells=500,
        )
