"""The ``samsvae`` command line: demo, simulate, download, train, evaluate, predict, interpret, check.

Run ``samsvae <command> --help`` for the options of each command. A user mistake (a missing file,
an obs column that does not exist, a perturbation unknown to the model...) ends with one line
``error: <message>`` on stderr and exit status 2; a failed download or a diverged training run ends
with exit status 1.

Experiments from YAML configs (``configs/``): ``train --config`` runs one, ``sweep`` runs every
combination of a config's listed values and aggregates them, ``compare`` tables run directories.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path
from typing import Any, Callable, get_args

from samsvae_pyro._typing import (
    CheckMode,
    DatasetName,
    Encoding,
    EstimatorName,
    Likelihood,
    PredictMode,
    SAMSGuideName,
    SimilarityMetric,
    SimilaritySource,
    SplitName,
)
from samsvae_pyro.defaults import BATCH_SIZE, LR, MAX_STEPS, N_HIDDEN, N_LATENT
from samsvae_pyro.files import check_writable

CHECK_SPLITS = tuple(split for split in get_args(SplitName) if split != "excluded")  # plus "all"

DEMO_DIR = "samsvae_demo"
RUN_DIR = "samsvae_run"
THREADS = 1  # samsvae_pyro.device.DEFAULT_THREADS, without importing torch for --help


def _render():
    """The printed summaries (:mod:`samsvae_pyro.runs.render`), imported when a command prints one."""
    from samsvae_pyro.runs import render

    return render


class _Formatter(argparse.HelpFormatter):
    """Every option's help line ends with its default, unless it already names it (or it is a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default is not None and action.default is not False
                and action.default is not argparse.SUPPRESS and "default" not in text and action.nargs != 0):
            text += f" (default: {action.default})"
        return text


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``error: ... (see `samsvae x --help`)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=_Formatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")

    def unknown_options(self, extra: list[str]) -> None:
        """Refuse arguments this (sub)command does not take, suggesting the closest option of its own."""
        options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        hints = []
        for word in (w for w in extra if w.startswith("-")):
            guess = "--" + word.lstrip("-").split("=")[0].replace("_", "-")
            close = difflib.get_close_matches(guess, options, n=1, cutoff=0.6)
            if close:
                hints.append((word.split("=")[0], close[0]))
        if len(hints) == 1:
            suggestion = f"; did you mean {hints[0][1]}?"
        else:
            suggestion = "".join(f"; {wrong}: did you mean {right}?" for wrong, right in hints)
        self.error(f"unrecognized arguments: {' '.join(extra)}{suggestion}")


# ---------------------------------------------------------------- commands: each calls into samsvae_pyro.runs


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate, train briefly, evaluate and save into one directory; print the headline numbers."""
    from samsvae_pyro.runs import run_demo

    out = check_writable(args.out, directory=True)
    start = time.perf_counter()
    report = run_demo(out, steps=args.steps, seed=args.seed, small=args.small, progress=not args.quiet,
                      threads=args.threads, log=print)
    _print_lines(_render().evaluation_summary(report, Path(args.out)))
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from samsvae_pyro import simulate_counts, simulate_paper
    from samsvae_pyro.runs.layout import write_h5ad

    out = _new_file(args.out, ".h5ad", overwrite=args.overwrite)
    if args.n_double and args.kind != "counts":
        raise ValueError("--n-double applies to --kind counts only; the paper simulation has single perturbations.")
    if args.kind == "counts":
        adata = simulate_counts(n_perturbations=args.n_perturbations or 12, n_double=args.n_double,
                                cells_per_perturbation=args.cells_per_perturbation or 200, n_groups=args.n_groups,
                                seed=args.seed)
        keys = "--perturbation-key perturbation --control-label non-targeting --split-key split"
    else:
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
    from samsvae_pyro.runs.experiment import read_h5ad
    from samsvae_pyro.runs.train import check_run_dir, train_anndata

    if args.resume:
        return _resume(args)
    if args.config:
        return _train_config(args)
    if args.adata is None:
        raise ValueError("give --adata (an .h5ad file of counts) or --config (an experiment YAML file, see configs/).")
    if args.set:
        raise ValueError("--set applies to --config runs only; without a config use the flags (see --help).")
    out = check_writable(check_run_dir(args.out or RUN_DIR, overwrite=args.overwrite), directory=True)
    adata = read_h5ad(args.adata, backed=args.backed)
    _check_columns(adata, args)
    setup = dict(perturbation_key=args.perturbation_key, control_label=args.control_label, layer=args.layer,
                 split_key=args.split_key, delimiter=args.delimiter, dosage_columns=args.dosage_columns,
                 control_pattern=args.control_pattern, encoding=args.encoding, split_seed=args.seed,
                 count_data=args.likelihood != "normal")
    model = dict(n_latent=args.n_latent, guide=args.guide, likelihood=args.likelihood,
                 mask_prior_prob=args.mask_prior_prob, n_hidden=args.n_hidden, n_layers=args.n_layers,
                 device=args.device, seed=args.seed, threads=args.threads)
    train = dict(max_steps=args.steps or MAX_STEPS, batch_size=args.batch_size, lr=args.lr,
                 n_particles=args.n_particles, estimator=args.estimator, val_every=args.val_every, seed=args.seed,
                 progress=not args.quiet, checkpoint_every=args.checkpoint_every, **_devices(args))
    evaluate = None if args.no_evaluate else dict(n_particles=args.eval_particles, seed=args.seed)
    report = train_anndata(adata, out, setup=setup, model=model, train=train, evaluate=evaluate, log=print)
    if report:
        _print_lines(_render().evaluation_summary(report, out))
    return 0


def _train_config(args: argparse.Namespace) -> int:
    """``samsvae train --config FILE``: one run of an experiment config (train, save, evaluate the best checkpoint)."""
    from samsvae_pyro.runs import load_config, resolve_config, run_config
    from samsvae_pyro.runs.layout import EXPERIMENT

    given = [name for name, default in args.flag_defaults.items() if getattr(args, name) != default]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ValueError(f"{flag} does not apply with --config; set the config key instead, e.g. "
                         "--set model.n_latent=20 or --set train.seed=1.")
    config = resolve_config(load_config(args.config), {**_overrides(args), **_engine_overrides(args)})
    out = Path(args.out or Path("runs") / f"{config['name'] or Path(args.config).stem}-{config['variant'] or 'run'}")
    check_writable(out, directory=True)
    print(f"training {config['model']['class']} ({config['guide']['name']} guide), variant {config['variant']} of "
          f"{args.config}, for {config['train']['max_steps']} steps into {out}")
    report = run_config(config, out, overwrite=args.overwrite, progress=not args.quiet, evaluate=not args.no_evaluate,
                        threads=args.threads, log=print)
    print(f"resolved config (every default written out): {out / EXPERIMENT}")
    if report:
        _print_lines(_render().evaluation_summary(report, out))
    return 0


def _devices(args: argparse.Namespace) -> dict:
    return dict(devices=args.devices, accelerator=args.accelerator, strategy=args.strategy, num_nodes=args.num_nodes)


def _resume(args: argparse.Namespace) -> int:
    from samsvae_pyro.runs import resume_run

    if args.config or args.set:
        raise ValueError("--resume continues a saved run with its own arguments; drop --config and --set.")
    evaluate = None if args.no_evaluate else dict(n_particles=args.eval_particles, seed=args.seed)
    report = resume_run(args.resume, args.adata, evaluate=evaluate, progress=not args.quiet, log=print,
                        backed=args.backed, **_devices(args))
    if report:
        _print_lines(_render().evaluation_summary(report, Path(args.resume)))
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """``--set KEY=VALUE`` pairs, plus ``--steps`` as ``train.max_steps``."""
    from samsvae_pyro.runs import parse_overrides

    overrides = parse_overrides(args.set or [])
    if args.steps:
        overrides["train.max_steps"] = args.steps
    return overrides


def _engine_overrides(args: argparse.Namespace) -> dict:
    """``samsvae train --config``'s device and checkpoint flags given on the command line, as ``train.*`` keys."""
    flags = {**_devices(args), "checkpoint_every": args.checkpoint_every}
    defaults = {"devices": 1, "accelerator": "auto", "strategy": "auto", "num_nodes": 1, "checkpoint_every": None}
    return {f"train.{k}": v for k, v in flags.items() if v != defaults[k]}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from samsvae_pyro.runs import evaluate_run, open_run
    from samsvae_pyro.runs.layout import TRUTH_KEY

    out = check_writable(args.out or args.run_dir, directory=True)
    model, adata = open_run(args.run_dir, args.adata, device=args.device, backed=args.backed)
    model.threads = args.threads
    report = evaluate_run(model, out, truth=adata.uns.get(TRUTH_KEY), n_particles=args.n_particles,
                          ate_draws=args.ate_draws, ate_samples_per_draw=args.ate_samples_per_draw,
                          plots=not args.no_plots, cell_eval=args.cell_eval, seed=args.seed)
    _print_lines(_render().evaluation_summary(report, out))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Every run of a config's sweep grid, then the aggregated table; exit status 1 if a run failed."""
    from samsvae_pyro.runs import load_config, run_sweep
    from samsvae_pyro.runs.layout import RUNS_DIR, RUNS_TABLE, SUMMARY_CSV, SUMMARY_MD

    config = load_config(args.config)
    out = check_writable(args.out or Path("runs") / str(config.get("name") or Path(args.config).stem), directory=True)
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

    check_writable(args.out, directory=False)
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
    out = _new_file(args.out or Path(args.run_dir) / PREDICTIONS, ".h5ad", overwrite=args.overwrite)
    model, _ = open_run(args.run_dir, args.adata, device=args.device, backed=args.backed)
    model.threads = args.threads
    source = read_h5ad(args.source, backed=args.backed) if args.source else None
    try:
        prediction = model.predict(list(args.perturbations), mode=args.mode, source=source, n_cells=args.n_cells,
                                   seed=args.seed)
    except ValueError as error:
        if source is not None and str(error).startswith("source"):
            raise ValueError(f"--source {args.source}: {error}") from error
        raise
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
    out = check_writable(args.out or args.run_dir, directory=True)
    model, adata = open_run(args.run_dir, args.adata, device=args.device, backed=args.backed)
    model.threads = args.threads
    target_key = None if args.target_key.lower() == "none" else args.target_key
    groups = choose_groups(model, adata, groups=groups, pathways=args.pathways, target_key=target_key, log=print)
    report = interpret_run(model, out, groups=groups, source=args.source, metric=args.metric,
                           n_clusters=args.n_clusters, n_permutations=args.n_permutations, n_samples=args.n_samples,
                           n_basal=args.n_basal, top_n=args.top_n, plots=not args.no_plots, seed=args.seed,
                           log=lambda line: print(line, flush=True))
    _print_lines(_render().interpretation_summary(report, out))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Posterior predictive checks of a run (and of --compare runs on the same cells), written to its directory."""
    from samsvae_pyro.runs import check_runs, open_run

    run_dirs = [args.run_dir, *args.compare]
    names = _run_names(run_dirs)
    out = check_writable(args.out or args.run_dir, directory=True)
    models = {name: open_run(run_dir, args.adata, device=args.device, backed=args.backed)[0]
              for name, run_dir in zip(names, run_dirs)}
    for model in models.values():
        model.threads = args.threads
    split = None if args.split == "all" else args.split
    report = check_runs(models, out, split=split, n_samples=args.n_samples, modes=args.modes,
                        plots=not args.no_plots, seed=args.seed, log=lambda line: print(line, flush=True))
    _print_lines(_render().check_summary(report, out))
    return 0


def _run_names(run_dirs: list[str]) -> list[str]:
    """Each run's directory name, or its whole path where two names would clash."""
    names = [Path(run_dir).resolve().name for run_dir in run_dirs]
    if len(set(map(str, map(Path, run_dirs)))) < len(run_dirs):
        raise ValueError("the same run directory is given twice; list each run once.")
    return names if len(set(names)) == len(names) else [str(run_dir) for run_dir in run_dirs]


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
    """An output file: the right suffix, not replacing a file without --overwrite, in a writable folder."""
    path = Path(path)
    if path.suffix != suffix:
        raise ValueError(f"{path} should end in {suffix}.")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; choose another path or pass --overwrite.")
    return check_writable(path, directory=False)


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="samsvae", description="SAMS-VAE (Sparse Additive Mechanism Shift VAE) in Pyro.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    parser.set_defaults(commands=commands.choices)
    _demo_parser(commands)
    _simulate_parser(commands)
    _download_parser(commands)
    _train_parser(commands)
    _evaluate_parser(commands)
    _sweep_parser(commands)
    _compare_parser(commands)
    _predict_parser(commands)
    _interpret_parser(commands)
    _check_parser(commands)
    return parser


def _command(commands, name: str, func: Callable, help: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help, description=help)
    sub.set_defaults(func=func)
    return sub


def _demo_parser(commands) -> None:
    sub = _command(commands, "demo", cmd_demo, "Simulate a count screen, train SAMS-VAE briefly, evaluate, "
                   "and write a report (a few minutes on 2 CPU cores).")
    sub.add_argument("--out", default=DEMO_DIR, help=f"report and model directory (default ./{DEMO_DIR})")
    sub.add_argument("--steps", type=_positive, default=MAX_STEPS, help="training steps")
    sub.add_argument("--seed", type=int, default=0, help="seed of the simulation and training")
    _threads_argument(sub)
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_argument("--small", action="store_true", help=argparse.SUPPRESS)  # tiny data, for the tests


def _simulate_parser(commands) -> None:
    sub = _command(commands, "simulate", cmd_simulate, "Write a simulated screen with known truth as .h5ad.")
    sub.add_argument("--out", required=True, help="output .h5ad file")
    sub.add_argument("--kind", choices=("counts", "paper"), default="counts",
                     help="counts: negative binomial counts with controls (default); "
                          "paper: the paper's continuous mask-recovery simulation")
    sub.add_argument("--seed", type=int, default=0, help="seed of the simulation")
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
    data.add_argument("--adata", default=None, help="input .h5ad (raw counts in X or in --layer), or .zarr")
    _backed_argument(data)
    data.add_argument("--perturbation-key", default=None, help="obs column of labels such as 'A', 'A+B', control")
    data.add_argument("--control-label", default="control", help="label of control cells (default 'control')")
    data.add_argument("--control-pattern", default=None, help="any label containing this is a control")
    data.add_argument("--dosage-columns", default=None, help="prefix of 0/1 obs columns, e.g. 'guide_'")
    data.add_argument("--delimiter", default="+", help="separator of combination members (default '+')")
    data.add_argument("--layer", default=None, help="layer holding the raw counts (default: X)")
    data.add_argument("--split-key", default=None,
                      help="obs column with train/val/test/excluded (default: random 64/16/20 split)")
    data.add_argument("--encoding", choices=get_args(Encoding), default="sum",
                      help="sum: a combination is the sum of its members (unseen pairs can be predicted); "
                           "unique: one column per observed combination")
    model = sub.add_argument_group("model (defaults for a first run on a small screen: README, \"Defaults\")")
    model.add_argument("--n-latent", type=_positive, default=N_LATENT, help="latent dimensions")
    model.add_argument("--n-hidden", type=_positive, default=N_HIDDEN, help="hidden units of decoder and encoders")
    model.add_argument("--n-layers", type=_positive, default=1, help="hidden layers of decoder and encoders")
    model.add_argument("--guide", choices=get_args(SAMSGuideName), default="correlated", help="variational family")
    model.add_argument("--likelihood", choices=get_args(Likelihood), default="nb",
                       help="nb or poisson for raw counts; normal for continuous values")
    model.add_argument("--mask-prior-prob", type=float, default=None,
                       help="prior probability of a mask entry (default: 1 / --n-latent)")
    fit = sub.add_argument_group("training")
    fit.add_argument("--out", default=None,
                     help=f"run directory (default ./{RUN_DIR}; with --config ./runs/NAME-VARIANT)")
    fit.add_argument("--steps", type=_positive, default=None,
                     help=f"training steps (default {MAX_STEPS}; with --config the config's train.max_steps)")
    fit.add_argument("--batch-size", type=_positive, default=BATCH_SIZE, help="cells per step")
    fit.add_argument("--lr", type=float, default=LR, help="Adam learning rate")
    fit.add_argument("--n-particles", type=_positive, default=5, help="latent samples per cell and step")
    fit.add_argument("--estimator", choices=get_args(EstimatorName), default="trace", help="ELBO estimator")
    fit.add_argument("--val-every", type=_positive, default=500, help="steps between validation passes")
    fit.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and training")
    fit.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    _threads_argument(fit)
    fit.add_argument("--eval-particles", type=_positive, default=100, help="IWELBO particles (default 100)")
    fit.add_argument("--no-evaluate", action="store_true", help="train and save only")
    fit.add_argument("--overwrite", action="store_true", help="replace a model already saved in --out")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.add_argument("--checkpoint-every", type=_positive, default=None,
                     help="save the run every N steps, to resume it if killed (default: every 1000 steps in "
                          "runs of 5000 steps or more)")
    fit.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help="continue the interrupted run saved in RUN_DIR to its step count (with --adata for a run "
                          "of --adata; a --config run rebuilds its data), then evaluate it")
    parallel = sub.add_argument_group("devices (data-parallel training through Lightning Fabric)")
    parallel.add_argument("--devices", type=_positive, default=1, help="processes (devices) per node (default 1)")
    parallel.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    parallel.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn or ddp_fork")
    parallel.add_argument("--num-nodes", type=_positive, default=1, help="machines (torchrun or SLURM launch)")
    flag_only = ("adata", "backed", "perturbation_key", "control_label", "control_pattern", "dosage_columns", "delimiter",
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
    sub.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    sub.add_argument("--cell-eval", action="store_true",
                     help="also score the model and baselines with cell-eval (pip install \"samsvae-pyro[eval]\")")
    sub.add_argument("--seed", type=int, default=0, help="seed of the IWELBO and model ATE sampling")
    sub.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    _threads_argument(sub)


def _threads_argument(sub) -> None:
    sub.add_argument("--threads", type=_positive, default=THREADS,
                     help="torch CPU threads; more than 1 helps only large models on an otherwise idle machine "
                          "(README, \"Speed and threads\")")


def _saved_run_arguments(sub: argparse.ArgumentParser) -> None:
    """RUN_DIR and --adata, for commands that read any saved run (evaluate, interpret)."""
    sub.add_argument("run_dir", help="directory written by `samsvae train`, `samsvae demo` or `samsvae sweep`")
    sub.add_argument("--adata", default=None,
                     help="the .h5ad the run was trained on (not needed for runs of an experiment config)")
    _backed_argument(sub)


def _backed_argument(sub) -> None:
    sub.add_argument("--backed", action="store_true",
                     help="keep the counts of --adata on disk and read them by rows (data larger than memory; README, "
                          "\"Data larger than memory\"); a .zarr directory is always read this way")


def _check_parser(commands) -> None:
    sub = _command(commands, "check", cmd_check, "Posterior predictive checks of a saved run: replicate its cells "
                   "from the model and compare statistics per gene, cell and condition (and with --compare, other "
                   "runs side by side on the same cells).")
    _saved_run_arguments(sub)
    sub.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR",
                     help="more run directories trained on the same cells, checked side by side")
    sub.add_argument("--out", default=None, help="report directory (default: the run directory)")
    sub.add_argument("--split", choices=[*CHECK_SPLITS, "all"], default="test",
                     help="cells to check (default test; all: every cell)")
    sub.add_argument("--n-samples", type=_at_least_two, default=20, help="replicated data sets (default 20)")
    sub.add_argument("--modes", nargs="+", choices=get_args(CheckMode), default=list(get_args(CheckMode)),
                     help="z_basal from the encoder (in_sample) and/or the prior (generative); default both")
    sub.add_argument("--no-plots", action="store_true", help="write the tables only")
    sub.add_argument("--seed", type=int, default=0, help="seed of the replicated data")
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")
    _threads_argument(sub)


def _at_least_two(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 replicates, got {text!r}")
    return value


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
    sub.add_argument("--threads", type=_positive, default=THREADS, help="torch CPU threads per run")
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
    _backed_argument(sub)
    sub.add_argument("--perturbations", nargs="+", required=True, metavar="LABEL", help="e.g. A B+C")
    sub.add_argument("--mode", choices=get_args(PredictMode), default="generative",
                     help="generative: z_basal from the prior; counterfactual: inferred from source cells "
                          "(default: the training controls) then shifted")
    sub.add_argument("--source", default=None,
                     help="counterfactual source cells (.h5ad): the training genes, the counts in the same layer "
                          "and each cell's own condition in the same obs column (e.g. the control label)")
    sub.add_argument("--n-cells", type=_positive, default=100, help="cells per perturbation (generative)")
    sub.add_argument("--out", default=None, help="output .h5ad (default: RUN_DIR/predictions.h5ad)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    sub.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    sub.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    _threads_argument(sub)


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
    sub.add_argument("--metric", choices=get_args(SimilarityMetric), default="cosine", help="similarity measure")
    sub.add_argument("--n-clusters", type=_positive, default=None,
                     help="clusters (default: the number of groups, else a cut at average similarity 0.5)")
    sub.add_argument("--n-permutations", type=_positive, default=1000, help="permutations of the null (default 1000)")
    sub.add_argument("--n-samples", type=_positive, default=100, help="posterior draws of (E, M) (default 100)")
    sub.add_argument("--n-basal", type=_positive, default=256,
                     help="basal states averaged by the decoder response (default 256)")
    sub.add_argument("--top-n", type=_positive, default=10,
                     help="perturbations (and 2x genes) listed per latent dim (default 10)")
    sub.add_argument("--out", default=None, help="output directory (default: the run directory)")
    sub.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    sub.add_argument("--seed", type=int, default=0, help="seed of the posterior draws and permutations")
    sub.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    _threads_argument(sub)


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
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        args.commands[args.command].unknown_options(extra)
    from samsvae_pyro.data.datasets import DownloadError
    from samsvae_pyro.infer import TrainingDivergedError

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        return _fail(error, 2)
    except (DownloadError, TrainingDivergedError, OSError) as error:  # OSError: e.g. a disk filled up meanwhile
        return _fail(error, 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(error: Any, status: int) -> int:
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
