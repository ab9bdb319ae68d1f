"""Paper experiments from YAML configs: one run, sweeps over listed values, comparison tables (issue 5).

- :mod:`.config`: load a YAML config, apply ``key=value`` overrides and a variant, validate, fill defaults.
- :mod:`.run`: one run (data, model, training, evaluation of the best checkpoint) in a run directory.
- :mod:`.sweep`: every combination of the listed values, sequential or over processes, aggregated.
- :mod:`.compare`: the paper-style table of run directories, as Markdown and CSV.

``samsvae train --config``, ``samsvae sweep`` and ``samsvae compare`` are the command-line entry points.
"""

from samsvae_pyro.experiments.compare import comparison_table, markdown_table, relative_iwelbo, write_table
from samsvae_pyro.experiments.config import apply_overrides, load_config, parse_overrides, resolve_config
from samsvae_pyro.experiments.run import build_model, load_experiment_run, prepare_data, read_run_config, run_config
from samsvae_pyro.experiments.sweep import expand_grid, plan_sweep, run_sweep, summarise

__all__ = [
    "apply_overrides", "build_model", "comparison_table", "expand_grid", "load_config", "load_experiment_run",
    "markdown_table", "parse_overrides", "plan_sweep", "prepare_data", "read_run_config", "relative_iwelbo",
    "resolve_config", "run_config", "run_sweep", "summarise", "write_table",
]
