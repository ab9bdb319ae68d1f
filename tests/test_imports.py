"""Importing the package and asking the CLI for help load no heavy dependency (issue 17, item 3).

Each check runs in a fresh interpreter and asserts which modules were loaded (never a wall time).
"""

import json
import subprocess
import sys

HEAVY = ("torch", "pyro", "anndata", "scanpy", "sklearn", "matplotlib", "lightning", "scipy.stats")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_samsvae_pyro_loads_nothing_heavy():
    assert loaded_after("import samsvae_pyro") == set()


def test_cli_help_loads_nothing_heavy():
    code = ("import contextlib, io, sys\nfrom samsvae_pyro import cli\nsys.argv = ['samsvae', '--help']\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    cli.main()")
    assert loaded_after(code) == set()


def test_model_class_loads_neither_plotting_nor_lightning():
    loaded = loaded_after("from samsvae_pyro import SAMSVAE")
    assert {"torch", "pyro", "anndata"} <= loaded
    assert not loaded & {"sklearn", "matplotlib", "lightning", "scanpy", "scipy.stats"}


def test_lazy_names_resolve_and_unknown_names_raise():
    import samsvae_pyro
    import samsvae_pyro.evaluate as evaluate

    assert samsvae_pyro.SAMSVAE.__name__ == "SAMSVAE" and "SAMSVAE" in dir(samsvae_pyro)
    assert callable(evaluate.data_ate) and set(evaluate.__all__) <= set(dir(evaluate))
    try:
        samsvae_pyro.NotAName
    except AttributeError as error:
        assert "NotAName" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
