"""The ``samsvae`` command line: demo, simulate, download, train, evaluate, predict, interpret.

Run ``samsvae <command> --help`` for the options of each command. A user mistake (a missing file,
an obs column that does not exist, a perturbation unknown to the model...) ends with one line
``error: <message>`` on stderr and exit status 2; a failed download or a diverged training run ends
with exit status 1.

Experiments from YAML configs (``configs/``): ``train --config`` runs one, ``sweep`` runs every
combination of a config's listed values and aggregates them, ``compare`` tables run directories.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, get_args

from samsvae_pyro._typing import (
    DatasetName,
    Encoding,
    EstimatorName,
    Likelihood,
    PredictMode,
    SAMSGuideName,
    SimilarityMetric,
    SimilaritySource,
)
from samsvae_pyro.runs.render import evaluation_summary, interpretation_summary

DEMO_DIR = "samsvae_demo"
RUN_DIR = "samsvae_run"
TRAIN_STEPS = 2000


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``error: ... (see `samsvae x --help`)``."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------- commands: each calls into samsvae_pyro.runs


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate, train briefly, evaluate and save into one directory; print the headline numbers."""
    import torch

    from samsvae_pyro.runs import run_demo

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    report = run_demo(args.out, steps=args.steps, seed=args.seed, small=args.small, progress=not args.quiet,
                      log=print)
    _print_lines(evaluation_summary(report, Path(args.out)))
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from samsvae_pyro import simulate_counts, simulate_paper
    from samsvae_pyro.runs.layout import write_h5ad

    out = _new_file(args.out, ".h5ad", overwrite=args.overwrite)
    if args.kind == "counts":
        adata = simulate_counts(n_perturbations=args.n_perturbations or 12, n_double=args.n_double,
                                cells_per_perturbation=args.cells_per_perturbation or 200, n_groups=args.n_groups,
                                seed=args.seed)
        keys = "--perturbation-key perturbation --control-label non-targeting --split-key split"
    else:
        if args.n_double:
            raise ValueError("--n-double applies to --kind counts only; the paper simulation has single perturbations.")
        cells = args.cells_per_perturbation or 700
        adata = simulate_paper(n_perturbations=args.n_perturbations or 100, seed=args.seed, n_groups=args.n_groups,
                               cells_per_perturbation=(round(cells * 5 / 7), round(cells / 7), round(cells / 7)))
        keys = "--perturbation-key perturbation --control-label control --split-key split --likelihood normal"
    write_h5ad(adata, out)
    print(f"wrote {out}: {adata.n_obs} cells x {adata.n_vars} genes ({args.kind} simulation, seed {args.seed}); "
          f"truth in uns['sams_truth']")
    print(f"train on it with: samsvae train --adata {out} {keys}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from samsvae_pyro.data import download_dataset

    path = download_dataset(args.name, cache_dir=args.cache_dir)
    loader = "load_norman" if args.name == "norman" else "build_replogle_filtered (then load_replogle)"
    print(f"{args.name}: {path}")
    print(f"load it with samsvae_pyro.data.{loader}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from samsvae_pyro.runs.experiment import read_h5ad
    from samsvae_pyro.runs.train import check_run_dir, train_anndata

    if args.config:
        return _train_config(args)
    if args.adata is None:
        raise ValueError("give --adata (an .h5ad file of counts) or --config (an experiment YAML file, see configs/).")
    if args.set:
        raise ValueError("--set applies to --config runs only; without a config use the flags (see --help).")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = check_run_dir(args.out or RUN_DIR, overwrite=args.overwrite)
    adata = read_h5ad(args.adata)
    _check_columns(adata, args)
    setup = dict(perturbation_key=args.perturbation_key, control_label=args.control_label, layer=args.layer,
                 split_key=args.split_key, delimiter=args.delimiter, dosage_columns=args.dosage_columns,
                 control_pattern=args.control_pattern, encoding=args.encoding, split_seed=args.seed)
    model = dict(n_latent=args.n_latent, guide=args.guide, likelihood=args.likelihood,
                 mask_prior_prob=args.mask_prior_prob, n_hidden=args.n_hidden, n_layers=args.n_layers,
                 device=args.device, seed=args.seed)
    train = dict(max_steps=args.steps or TRAIN_STEPS, batch_size=args.batch_size, lr=args.lr,
                 n_particles=args.n_particles, estimator=args.estimator, val_every=args.val_every, seed=args.seed,
                 progress=not args.quiet)
    evaluate = None if args.no_evaluate else dict(n_particles=args.eval_particles, seed=args.seed)
    report = train_anndata(adata, out, setup=setup, model=model, train=train, evaluate=evaluate, log=print)
    if report:
        _print_lines(evaluation_summary(report, out))
    return 0


def _train_config(args: argparse.Namespace) -> int:
    """``samsvae train --config FILE``: one run of an experiment config (train, save, evaluate the best checkpoint)."""
    import torch

    from samsvae_pyro.runs import load_config, resolve_config, run_config

    given = [name for name, default in args.flag_defaults.items() if getattr(args, name) != default]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ValueError(f"{flag} does not apply with --config; set the config key instead, e.g. "
                         "--set model.n_latent=20 or --set train.seed=1.")
    config = resolve_config(load_config(args.config), _overrides(args))
    out = Path(args.out or Path("runs") / f"{config['name'] or Path(args.config).stem}-{config['variant'] or 'run'}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"training {config['model']['class']} ({config['guide']['name']} guide), variant {config['variant']} of "
          f"{args.config}, for {config['train']['max_steps']} steps into {out}")
    report = run_config(config, out, overwrite=args.overwrite, progress=not args.quiet, evaluate=not args.no_evaluate,
                        log=print)
    print(f"saved the model and the resolved config (experiment.yaml) in {out}")
    if report:
        _print_lines(evaluation_summary(report, out))
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """``--set KEY=VALUE`` pairs, plus ``--steps`` as ``train.max_steps``."""
    from samsvae_pyro.runs import parse_overrides

    overrides = parse_overrides(args.set or [])
    if args.steps:
        overrides["train.max_steps"] = args.steps
    return overrides


def cmd_evaluate(args: argparse.Namespace) -> int:
    from samsvae_pyro.runs import evaluate_run, open_run
    from samsvae_pyro.runs.layout import TRUTH_KEY

    model, adata = open_run(args.run_dir, args.adata, device=args.device)
    out = Path(args.out) if args.out else Path(args.run_dir)
    report = evaluate_run(model, out, truth=adata.uns.get(TRUTH_KEY), n_particles=args.n_particles,
                          ate_draws=args.ate_draws, ate_samples_per_draw=args.ate_samples_per_draw,
                          plots=not args.no_plots, cell_eval=args.cell_eval, seed=args.seed)
    _print_lines(evaluation_summary(report, out))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Every run of a config's sweep grid, then the aggregated table; exit status 1 if a run failed."""
    from samsvae_pyro.runs import load_config, run_sweep
    from samsvae_pyro.runs.layout import RUNS_DIR, RUNS_TABLE, SUMMARY_CSV, SUMMARY_MD

    config = load_config(args.config)
    out = Path(args.out or Path("runs") / str(config.get("name") or Path(args.config).stem))
    runs, _ = run_sweep(config, out, overrides=_overrides(args), jobs=args.jobs, covering=args.covering,
                        overwrite=args.overwrite, threads=args.threads, progress=not args.quiet)
    print((out / SUMMARY_MD).read_text())
    print(f"summary: {out / SUMMARY_MD} and {out / SUMMARY_CSV}; per run: {out / RUNS_TABLE}, run "
          f"directories in {out / RUNS_DIR}")
    failed = int((~runs["status"].isin(["ok", "reused"])).sum())
    if failed:
        print(f"error: {failed} of {len(runs)} runs failed (see {out / RUNS_TABLE})", file=sys.stderr)
    return 1 if failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    """The paper-style table of run directories, printed and written as Markdown and CSV."""
    from samsvae_pyro.runs import comparison_table, write_table
    from samsvae_pyro.runs.compare import comparison_markdown

    table = comparison_table(args.run_dirs, reference=args.reference)
    reference = Path(args.reference or args.run_dirs[0]).name
    text = (comparison_markdown(table) + f"\nIWELBO: held-out predictive IWELBO, nats per cell; relative IWELBO: "
            f"run minus {reference} on the same cells (higher is better); ATE r: Pearson of model vs data ATE per "
            "condition subset, on all genes and on each condition's top genes.\n")
    markdown, csv = write_table(table, args.out, markdown=text)
    print(text)
    print(f"wrote {markdown} and {csv}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from samsvae_pyro.runs import open_run
    from samsvae_pyro.runs.experiment import read_h5ad
    from samsvae_pyro.runs.layout import PREDICTIONS, write_h5ad

    if args.source and args.mode != "counterfactual":
        raise ValueError("--source applies to --mode counterfactual only.")
    out = Path(args.out or Path(args.run_dir) / PREDICTIONS)
    if out.suffix != ".h5ad":
        raise ValueError(f"{out} should end in .h5ad.")
    model, _ = open_run(args.run_dir, args.adata, device=args.device)
    source = read_h5ad(args.source) if args.source else None
    prediction = model.predict(list(args.perturbations), mode=args.mode, source=source, n_cells=args.n_cells,
                               seed=args.seed)
    write_h5ad(prediction, out)
    counts = prediction.obs["perturbation"].value_counts()
    print(f"wrote {out}: {prediction.n_obs} predicted cells x {prediction.n_vars} genes ({args.mode}; "
          + ", ".join(f"{label}: {counts[label]}" for label in args.perturbations) + ")")
    print("X: log1p of counts normalised to 1e4; layers['counts']: sampled counts; obs['perturbation']: label")
    return 0


def cmd_interpret(args: argparse.Namespace) -> int:
    from samsvae_pyro.interpret import read_groups
    from samsvae_pyro.runs import interpret_run, open_run
    from samsvae_pyro.runs.interpretation import choose_groups

    if args.groups and args.pathways:
        raise ValueError("give either --groups FILE or --pathways, not both.")
    groups = read_groups(args.groups) if args.groups else None
    model, adata = open_run(args.run_dir, args.adata, device=args.device)
    target_key = None if args.target_key.lower() == "none" else args.target_key
    groups = choose_groups(model, adata, groups=groups, pathways=args.pathways, target_key=target_key, log=print)
    out = Path(args.out) if args.out else Path(args.run_dir)
    report = interpret_run(model, out, groups=groups, source=args.source, metric=args.metric,
                           n_clusters=args.n_clusters, n_permutations=args.n_permutations, n_samples=args.n_samples,
                           n_basal=args.n_basal, top_n=args.top_n, plots=not args.no_plots, seed=args.seed,
                           log=lambda line: print(line, flush=True))
    _print_lines(interpretation_summary(report, out))
    return 0


# ---------------------------------------------------------------- helpers


def _check_columns(adata, args: argparse.Namespace) -> None:
    """Name the missing obs column or layer (by its flag) before anything else runs."""
    for option, key in (("--perturbation-key", args.perturbation_key), ("--split-key", args.split_key)):
        if key is not None and key not in adata.obs:
            raise ValueError(f"{option} {key!r} is not an obs column of {args.adata}; "
                             f"obs columns: {', '.join(map(str, adata.obs.columns[:20]))}.")
    if args.layer is not None and args.layer not in adata.layers:
        raise ValueError(f"--layer {args.layer!r} is not a layer of {args.adata}; layers: {list(adata.layers)}.")
    if args.perturbation_key is None and args.dosage_columns is None:
        raise ValueError("give --perturbation-key (an obs column of labels) or --dosage-columns (a 0/1 column prefix).")


def _new_file(path: str | Path, suffix: str, *, overwrite: bool) -> Path:
    path = Path(path)
    if path.suffix != suffix:
        raise ValueError(f"{path} should end in {suffix}.")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; choose another path or pass --overwrite.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="samsvae", description="SAMS-VAE (Sparse Additive Mechanism Shift VAE) in Pyro.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _demo_parser(commands)
    _simulate_parser(commands)
    _download_parser(commands)
    _train_parser(commands)
    _evaluate_parser(commands)
    _sweep_parser(commands)
    _compare_parser(commands)
    _predict_parser(commands)
    _interpret_parser(commands)
    return parser


def _command(commands, name: str, func: Callable, help: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help, description=help)
    sub.set_defaults(func=func)
    return sub


def _demo_parser(commands) -> None:
    sub = _command(commands, "demo", cmd_demo, "Simulate a count screen, train SAMS-VAE briefly, evaluate, "
                   "and write a report (a few minutes on 2 CPU cores).")
    sub.add_argument("--out", default=DEMO_DIR, help=f"report and model directory (default ./{DEMO_DIR})")
    sub.add_argument("--steps", type=_positive, default=1500, help="training steps (default 1500)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the simulation and training (default 0)")
    sub.add_argument("--threads", type=_positive, default=1,
                     help="torch CPU threads (default 1: faster than more for this tiny model)")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_argument("--small", action="store_true", help=argparse.SUPPRESS)  # tiny data, for the tests


def _simulate_parser(commands) -> None:
    sub = _command(commands, "simulate", cmd_simulate, "Write a simulated screen with known truth as .h5ad.")
    sub.add_argument("--out", required=True, help="output .h5ad file")
    sub.add_argument("--kind", choices=("counts", "paper"), default="counts",
                     help="counts: negative binomial counts with controls (default); "
                          "paper: the paper's continuous mask-recovery simulation")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--n-perturbations", type=_positive, default=None,
                     help="perturbations (default 12 for counts, 100 for paper)")
    sub.add_argument("--cells-per-perturbation", type=_positive, default=None,
                     help="cells per condition (default 200 for counts; 700 for paper, split 500/100/100)")
    sub.add_argument("--n-double", type=_non_negative, default=0, help="double perturbations A+B (counts only)")
    sub.add_argument("--n-groups", type=_non_negative, default=0,
                     help="groups of perturbations sharing latent dims and signs, stored in uns['sams_truth']"
                          "['groups'] (default 0: none)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _download_parser(commands) -> None:
    sub = _command(commands, "download", cmd_download, "Download a paper dataset into the cache (resumable).")
    sub.add_argument("name", choices=get_args(DatasetName),
                     help="norman: Norman 2019 (1.7 GB); replogle: Replogle 2022 genome-wide K562 file (~66 GB)")
    sub.add_argument("--cache-dir", default=None,
                     help="cache directory (default $SAMSVAE_CACHE or ~/.cache/samsvae_pyro)")


def _train_parser(commands) -> None:
    sub = _command(commands, "train", cmd_train, "Train SAMS-VAE on an .h5ad file, save it, and evaluate it; "
                   "or run an experiment config (--config).")
    experiment = sub.add_argument_group("experiment config (instead of --adata and the data/model/training flags)")
    experiment.add_argument("--config", default=None, metavar="FILE", help="experiment YAML, e.g. configs/demo.yaml")
    experiment.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                            help="override a config value (repeatable), e.g. --set variant=cpa_vae "
                                 "--set train.seed=1 --set data.path=norman.h5ad")
    data = sub.add_argument_group("data")
    data.add_argument("--adata", default=None, help="input .h5ad (raw counts in X or in --layer)")
    data.add_argument("--perturbation-key", default=None, help="obs column of labels such as 'A', 'A+B', control")
    data.add_argument("--control-label", default="control", help="label of control cells (default 'control')")
    data.add_argument("--control-pattern", default=None, help="any label containing this is a control")
    data.add_argument("--dosage-columns", default=None, help="prefix of 0/1 obs columns, e.g. 'guide_'")
    data.add_argument("--delimiter", default="+", help="separator of combination members (default '+')")
    data.add_argument("--layer", default=None, help="layer holding the counts (default X)")
    data.add_argument("--split-key", default=None,
                      help="obs column with train/val/test/excluded (default: random 64/16/20 split)")
    data.add_argument("--encoding", choices=get_args(Encoding), default="sum")
    model = sub.add_argument_group("model")
    model.add_argument("--n-latent", type=_positive, default=10)
    model.add_argument("--n-hidden", type=_positive, default=400)
    model.add_argument("--n-layers", type=_positive, default=1)
    model.add_argument("--guide", choices=get_args(SAMSGuideName), default="correlated")
    model.add_argument("--likelihood", choices=get_args(Likelihood), default="nb")
    model.add_argument("--mask-prior-prob", type=float, default=0.01)
    fit = sub.add_argument_group("training")
    fit.add_argument("--out", default=None,
                     help=f"run directory (default ./{RUN_DIR}; with --config ./runs/NAME-VARIANT)")
    fit.add_argument("--steps", type=_positive, default=None,
                     help=f"training steps (default {TRAIN_STEPS}; with --config the config's train.max_steps)")
    fit.add_argument("--batch-size", type=_positive, default=512)
    fit.add_argument("--lr", type=float, default=3e-4)
    fit.add_argument("--n-particles", type=_positive, default=5)
    fit.add_argument("--estimator", choices=get_args(EstimatorName), default="trace")
    fit.add_argument("--val-every", type=_positive, default=500)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="auto", help="auto, cpu or cuda")
    fit.add_argument("--threads", type=_positive, default=None, help="torch CPU threads (default: torch's)")
    fit.add_argument("--eval-particles", type=_positive, default=100, help="IWELBO particles (default 100)")
    fit.add_argument("--no-evaluate", action="store_true", help="train and save only")
    fit.add_argument("--overwrite", action="store_true", help="replace a model already saved in --out")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    flag_only = ("adata", "perturbation_key", "control_label", "control_pattern", "dosage_columns", "delimiter",
                 "layer", "split_key", "encoding", "n_latent", "n_hidden", "n_layers", "guide", "likelihood",
                 "mask_prior_prob", "batch_size", "lr", "n_particles", "estimator", "val_every", "seed", "device",
                 "eval_particles")
    sub.set_defaults(flag_defaults={name: sub.get_default(name) for name in flag_only})


def _evaluate_parser(commands) -> None:
    sub = _command(commands, "evaluate", cmd_evaluate, "Evaluate a saved run and write its report.")
    _saved_run_arguments(sub)
    sub.add_argument("--out", default=None, help="report directory (default: the run directory)")
    sub.add_argument("--n-particles", type=_positive, default=100, help="IWELBO particles (default 100)")
    sub.add_argument("--ate-draws", type=_positive, default=50, help="posterior draws of the model ATE (default 50)")
    sub.add_argument("--ate-samples-per-draw", type=_positive, default=50, help="samples per draw (default 50)")
    sub.add_argument("--no-plots", action="store_true")
    sub.add_argument("--cell-eval", action="store_true",
                     help="also score the model and baselines with cell-eval (pip install \"samsvae-pyro[eval]\")")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _saved_run_arguments(sub: argparse.ArgumentParser) -> None:
    """RUN_DIR and --adata, for commands that read any saved run (evaluate, interpret)."""
    sub.add_argument("run_dir", help="directory written by `samsvae train`, `samsvae demo` or `samsvae sweep`")
    sub.add_argument("--adata", default=None,
                     help="the .h5ad the run was trained on (not needed for runs of an experiment config)")


def _sweep_parser(commands) -> None:
    sub = _command(commands, "sweep", cmd_sweep, "Run every combination of an experiment config's sweep values "
                   "(seeds, fractions, encodings, models), then aggregate them into one table.")
    sub.add_argument("config", help="experiment YAML with a sweep section, e.g. configs/norman_ood.yaml")
    sub.add_argument("--jobs", type=_positive, default=1, help="runs at a time, in separate processes (default 1)")
    sub.add_argument("--out", default=None, help="output directory (default ./runs/NAME)")
    sub.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                     help="override a config value in every run (repeatable), e.g. --set data.path=norman.h5ad")
    sub.add_argument("--steps", type=_positive, default=None, help="training steps of every run (train.max_steps)")
    sub.add_argument("--covering", action="store_true",
                     help="only as many runs as the longest value list, every value at least once (a quick check)")
    sub.add_argument("--overwrite", action="store_true", help="replace run directories that hold another config")
    sub.add_argument("--threads", type=_positive, default=None, help="torch CPU threads per run (default: torch's)")
    sub.add_argument("--quiet", action="store_true", help="no progress output")


def _compare_parser(commands) -> None:
    sub = _command(commands, "compare", cmd_compare, "Paper-style table of run directories: IWELBO, relative "
                   "IWELBO, ATE Pearson (all / top-20 genes) per split, mask F1; Markdown and CSV.")
    sub.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="evaluated run directories (with metrics.json)")
    sub.add_argument("--reference", default=None, metavar="RUN_DIR",
                     help="run the relative IWELBO is taken against (default: the first RUN_DIR)")
    sub.add_argument("--out", default="comparison.md",
                     help="table file; .md and .csv are both written (default ./comparison.md)")


def _predict_parser(commands) -> None:
    sub = _command(commands, "predict", cmd_predict, "Sample cells under perturbations or unseen combinations.")
    sub.add_argument("run_dir", help="directory written by `samsvae train` or `samsvae demo`")
    sub.add_argument("--adata", required=True, help="the .h5ad the run was trained on")
    sub.add_argument("--perturbations", nargs="+", required=True, metavar="LABEL", help="e.g. A B+C")
    sub.add_argument("--mode", choices=get_args(PredictMode), default="generative",
                     help="generative: z_basal from the prior; counterfactual: inferred from source cells "
                          "(default: the training controls) then shifted")
    sub.add_argument("--source", default=None, help="counterfactual source cells (.h5ad, same genes)")
    sub.add_argument("--n-cells", type=_positive, default=100, help="cells per perturbation (generative)")
    sub.add_argument("--out", default=None, help="output .h5ad (default RUN_DIR/predictions.h5ad)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _interpret_parser(commands) -> None:
    sub = _command(commands, "interpret", cmd_interpret, "Latent structure of a saved run: perturbation similarity "
                   "and clusters, a grouping score against a permutation null, and what each latent dim does.")
    _saved_run_arguments(sub)
    grouping = sub.add_argument_group("grouping (default: uns['sams_truth']['groups'] of a grouped simulation)")
    grouping.add_argument("--groups", default=None, metavar="FILE",
                          help=".json {group: [perturbations]} or .csv/.tsv with columns perturbation, group")
    grouping.add_argument("--pathways", action="store_true",
                          help="group perturbations by the adata's uns['pathways'] (complex -> target genes)")
    grouping.add_argument("--target-key", default="gene",
                          help="obs column of each cell's target gene for --pathways (default 'gene'; "
                               "'none': perturbation names are the genes)")
    sub.add_argument("--source", choices=get_args(SimilaritySource), default="effects",
                     help="compare posterior mean effects E * M (default) or mask probabilities q(m = 1)")
    sub.add_argument("--metric", choices=get_args(SimilarityMetric), default="cosine")
    sub.add_argument("--n-clusters", type=_positive, default=None,
                     help="clusters (default: the number of groups, else a cut at average similarity 0.5)")
    sub.add_argument("--n-permutations", type=_positive, default=1000, help="permutations of the null (default 1000)")
    sub.add_argument("--n-samples", type=_positive, default=100, help="posterior draws of (E, M) (default 100)")
    sub.add_argument("--n-basal", type=_positive, default=256,
                     help="basal states averaged by the decoder response (default 256)")
    sub.add_argument("--top-n", type=_positive, default=10,
                     help="perturbations (and 2x genes) listed per latent dim (default 10)")
    sub.add_argument("--out", default=None, help="output directory (default: the run directory)")
    sub.add_argument("--no-plots", action="store_true")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _positive(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the ``samsvae`` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    from samsvae_pyro.data.datasets import DownloadError
    from samsvae_pyro.infer import TrainingDivergedError

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        return _fail(error, 2)
    except (DownloadError, TrainingDivergedError) as error:
        return _fail(error, 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(error: Any, status: int) -> int:
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
