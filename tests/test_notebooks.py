"""Every notebook in notebooks/ runs top to bottom at small size, so that none can rot.

Each notebook is executed in a fresh ``python3`` kernel with ``SAMSVAE_NOTEBOOK_SMALL=1`` (its small-size
switch), one thread, and a temporary working directory; it ends with a cell of assertions on its own results.
``07_real_data`` reads the real Norman subset of ``../shared/data`` (``SAMSVAE_REAL_DATA``) and is skipped where
it is absent. The Norman and Replogle sections of the others run on small schema-faithful files (``tests/schema_files.py``) given by
``SAMSVAE_NORMAN_PATH`` and ``SAMSVAE_REPLOGLE_PATH``; an empty ``SAMSVAE_CACHE`` and no
``SAMSVAE_NORMAN_DOWNLOAD`` make sure nothing is downloaded. New notebooks are picked up by the glob.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.runs.conftest import PAIRS, SINGLES
from tests.schema_files import write_norman_file, write_replogle_file

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"  # real subsets (07 only)
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds; a whole notebook takes well under a minute at small size
REPLOGLE_COMPLEXES = {"COMPLEX_A": ["T0", "T1", "T2"], "COMPLEX_B": ["T3", "T4"]}  # target genes T0-T7


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory) -> dict[str, str]:
    """Environment of the notebook kernels: the small-size switch and the schema-faithful data files."""
    folder = tmp_path_factory.mktemp("notebook_inputs")
    write_norman_file(folder / "norman.h5ad", conditions=("control",) + SINGLES + PAIRS, cells_per_condition=20,
                      n_genes=48)
    replogle = write_replogle_file(folder / "replogle.h5ad")  # T0-T2 share an effect: COMPLEX_A is a real group
    replogle.uns["pathways"] = REPLOGLE_COMPLEXES
    replogle.write_h5ad(folder / "replogle.h5ad")
    return {"SAMSVAE_NOTEBOOK_SMALL": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "SAMSVAE_NORMAN_PATH": str(folder / "norman.h5ad"), "SAMSVAE_REPLOGLE_PATH": str(folder / "replogle.h5ad"),
            "SAMSVAE_CACHE": str(folder / "empty_cache"), "SAMSVAE_REAL_DATA": str(REAL_DATA)}


def test_the_notebooks_are_there():
    names = {path.stem for path in NOTEBOOKS}
    assert {"01_quickstart", "02_guides_and_estimators", "03_posterior_predictive_checks", "04_interpretability",
            "05_norman_reproduction", "06_mask_recovery_experiments", "07_real_data"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_are_stored_clean(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert notebook.nbformat == 4 and notebook.metadata["kernelspec"]["name"] == "python3"
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "strip the outputs"
    assert 'SMALL = os.environ.get("SAMSVAE_NOTEBOOK_SMALL", "0") == "1"' in code[0].source
    assert "assert " in code[-1].source  # the notebook checks its own results
    assert any(cell.cell_type == "markdown" for cell in notebook.cells)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_at_small_size(path, notebook_env, tmp_path, monkeypatch):
    if path.stem == "07_real_data" and not (REAL_DATA / "norman2019_k562_subset.h5ad").exists():
        pytest.skip(f"the real Norman subset is not in {REAL_DATA} (only on the project machine)")
    for name, value in notebook_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SAMSVAE_NORMAN_DOWNLOAD", raising=False)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, when any cell (the final assertions too) fails
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]
