"""A trained run on disk: the floor above the API (and below only the command line).

Everything that consumes a trained model and a directory lives here; :mod:`samsvae_pyro.api` never
imports it.

- :mod:`.layout`: every file name of a run, ``save_run`` / ``load_run`` (atomic writes, checksums).
- :mod:`.train`: the one train -> save -> evaluate sequence (demo, a user's AnnData, a config).
- :mod:`.evaluation`: the evaluation report (``metrics.json``, ``metrics.md``, ATE files, plots).
- :mod:`.interpretation`: the latent-structure report (``interpret.json``, tables, plots).
- :mod:`.criticism`: posterior predictive checks of one or several runs (``ppc.json``, tables, figures).
- :mod:`.render`: JSON values, number formatting, Markdown and printed summaries.
- :mod:`.config`: experiment YAML configs loaded, overridden, validated; :mod:`.experiment`: their data.
- :mod:`.sweep`: every combination of a config's listed values, aggregated; :mod:`.compare`: the
  paper-style table of run directories.

Each name's module is imported on first use, so that the command line's ``--help`` stays light.

Examples
--------
>>> import tempfile
>>> from samsvae_pyro import SAMSVAE, simulate_counts
>>> from samsvae_pyro.runs import load_run, train_run
>>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=20, n_genes=8, n_ate_samples=10)
>>> SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> model = SAMSVAE(adata, n_latent=2, n_hidden=8, device="cpu")
>>> with tempfile.TemporaryDirectory() as run:
...     metrics = train_run(model, run, train=dict(max_steps=2, progress=False),
...                         evaluate=dict(n_particles=2, ate_draws=2, ate_samples_per_draw=2, plots=False))
...     reloaded = load_run(run, adata, device="cpu")
>>> type(reloaded).__name__, len(reloaded.history), "iwelbo" in metrics
('SAMSVAE', 2, True)
"""

from typing import TYPE_CHECKING

from samsvae_pyro._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["check_runs"], "samsvae_pyro.runs.criticism"),
    **dict.fromkeys(["comparison_table", "relative_iwelbo", "write_table"], "samsvae_pyro.runs.compare"),
    **dict.fromkeys(
        ["apply_overrides", "load_config", "parse_overrides", "resolve_config"],
        "samsvae_pyro.runs.config",
    ),
    **dict.fromkeys(["check_runs"], "samsvae_pyro.runs.criticism"),
    **dict.fromkeys(["evaluate_run"], "samsvae_pyro.runs.evaluation"),
    **dict.fromkeys(
        ["build_model", "load_experiment_run", "open_run", "prepare_data", "read_run_config"],
        "samsvae_pyro.runs.experiment",
    ),
    **dict.fromkeys(["interpret_run"], "samsvae_pyro.runs.interpretation"),
    **dict.fromkeys(["load_run", "read_metrics", "save_run"], "samsvae_pyro.runs.layout"),
    **dict.fromkeys(["expand_grid", "plan_sweep", "run_sweep", "summarise"], "samsvae_pyro.runs.sweep"),
    **dict.fromkeys(["demo_data", "run_config", "run_demo", "train_anndata", "train_run"], "samsvae_pyro.runs.train"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from samsvae_pyro.runs.compare import comparison_table, relative_iwelbo, write_table
    from samsvae_pyro.runs.criticism import check_runs
    from samsvae_pyro.runs.config import apply_overrides, load_config, parse_overrides, resolve_config
    from samsvae_pyro.runs.evaluation import evaluate_run
    from samsvae_pyro.runs.experiment import build_model, load_experiment_run, open_run, prepare_data, read_run_config
    from samsvae_pyro.runs.interpretation import interpret_run
    from samsvae_pyro.runs.layout import load_run, read_metrics, save_run
    from samsvae_pyro.runs.sweep import expand_grid, plan_sweep, run_sweep, summarise
    from samsvae_pyro.runs.train import demo_data, run_config, run_demo, train_anndata, train_run

__all__ = [
    "apply_overrides", "build_model", "check_runs", "comparison_table", "demo_data", "evaluate_run", "expand_grid",
    "interpret_run", "load_config", "load_experiment_run", "load_run", "open_run", "parse_overrides",
    "plan_sweep", "prepare_data", "read_metrics", "read_run_config", "relative_iwelbo", "resolve_config",
    "run_config", "run_demo", "run_sweep", "save_run", "summarise", "train_anndata", "train_run", "write_table",
]
