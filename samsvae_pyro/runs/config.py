"""Experiment configs: the paper's experiments as YAML files, loaded, overridden, validated (issue 5, item 2).

A config is nested by section, and every key below a section is an argument of the public API::

    name, description   free text
    data                source (norman | replogle | h5ad | simulate_counts | simulate_paper), path,
                        setup (setup_anndata arguments), split (how cells are split), simulate (simulator
                        arguments)
    model               class (a family of samsvae_pyro.api.FAMILIES) and its constructor arguments
    guide               name of a registered guide and its guide_kwargs
    train               PerturbationModel.train arguments
    evaluate            evaluate_run arguments
    variants            named sets of overrides (e.g. one per model family); ``variant`` picks one
    sweep               grid (dotted key -> list of values), replicates, reference (see :mod:`.sweep`)

An override is a dotted path set to a value (``train.max_steps=5``, ``guide={name: mean_field}``); it
replaces whatever is at that path, a whole section included. Resolution order: the config, the user's
overrides (which may pick the variant), the variant's overrides, the user's overrides again (the user
wins), then defaults and validation. The resolved config is complete: every default is written out.

Choices beyond the issue text: ``train.seed`` also seeds the parameter initialisation (as the CLI's
``--seed``) unless ``model.seed`` is given; the split owns the split column, so ``data.setup`` takes no
``split_key`` / ``split_seed``; relative paths in ``data.path`` are taken from the working directory
and written out absolute.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from samsvae_pyro.api import FAMILIES, PerturbationModel
from samsvae_pyro.data import datasets, simulate_counts, simulate_paper
from samsvae_pyro.files import write_text
from samsvae_pyro.runs.evaluation import evaluate_run

SECTIONS = ("data", "model", "guide", "train", "evaluate")
TOP_LEVEL = ("name", "description", "variant", "variants", "sweep") + SECTIONS
RUN_KEYS = ("name", "description", "variant") + SECTIONS  # what a resolved run config holds
DATA_KEYS = ("source", "path", "setup", "split", "simulate")
SIMULATORS: dict[str, Callable] = {"simulate_counts": simulate_counts, "simulate_paper": simulate_paper}
FILE_SOURCES = ("norman", "replogle", "h5ad")
SOURCES = FILE_SOURCES + tuple(SIMULATORS)
REPLOGLE_FILTERED = "replogle_filtered.h5ad"  # default name of the built file in the cache
SPLITS: dict[str, dict[str, Any]] = {  # split kind -> its keys and their defaults
    "column": {"key": "split"},
    "random": {"seed": 0, "fractions": [0.64, 0.16, 0.2]},
    "norman_ood": {"fraction": 1.0, "seed": 0},
    "norman_data_efficiency": {"fraction": 1.0, "seed": 0},
}
_NOT_CONFIG = {  # API arguments a config cannot set, and why
    "train": ("self", "callback", "progress", "devices", "process_dir"),
    "evaluate": ("model", "output_dir", "truth"),
    "setup": ("cls", "adata", "split_key", "split_seed"),
}


# ---------------------------------------------------------------- reading and overriding


def load_config(path: str | Path) -> dict:
    """The raw config of a YAML file (not yet resolved); ValueError naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; give a YAML file such as configs/demo.yaml.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} should hold a mapping with sections {', '.join(SECTIONS)}.")
    return config


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a.b": 1, "c": ["x", "y"]}``; values are parsed as YAML."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} should read KEY=VALUE, e.g. train.max_steps=100.")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({error}).") from error
    return overrides


def apply_overrides(config: Mapping, overrides: Mapping[str, Any]) -> dict:
    """A copy of ``config`` with each dotted path set to its value (intermediate sections created)."""
    config = copy.deepcopy(dict(config))
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = config
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ValueError(f"override {path}: {where} holds a value, not a section; set {where} itself.")
        node[leaf] = copy.deepcopy(value)
    return config


# ---------------------------------------------------------------- resolution


def resolve_config(config: Mapping, overrides: Mapping[str, Any] | None = None) -> dict:
    """The complete, validated config of one run: overrides and variant applied, defaults written out.

    Parameters
    ----------
    config
        A raw config (as :func:`load_config` returns).
    overrides
        Dotted path -> value, e.g. ``{"train.max_steps": 5, "variant": "cpa_vae"}``.

    Returns
    -------
    A dict with keys name, description, variant and the sections; safe to dump as YAML.

    Examples
    --------
    >>> config = {"data": {"source": "simulate_counts", "setup": {"perturbation_key": "perturbation"}},
    ...           "model": {"n_latent": 4}, "variants": {"cpa": {"model.class": "CPAVAE"}}}
    >>> run = resolve_config(config, {"train.lr": 1e-3})
    >>> run["variant"], run["model"]["class"], run["guide"], run["train"]["lr"], run["data"]["split"]["kind"]
    ('cpa', 'CPAVAE', {'name': 'mean_field'}, 0.001, 'column')
    """
    overrides = dict(overrides or {})
    chosen = apply_overrides(config, overrides)
    _check_keys(chosen, TOP_LEVEL, "the config")
    variants = chosen.get("variants") or {}
    name = chosen.get("variant") or next(iter(variants), None)
    if variants or name is not None:
        if name not in variants:
            raise ValueError(f"variant {name!r} is not defined; the config's variants: {', '.join(variants) or 'none'}.")
        if not isinstance(variants[name], Mapping):
            raise ValueError(f"variants.{name} should map dotted keys to values, e.g. {{model.class: CPAVAE}}.")
        chosen = apply_overrides(apply_overrides(chosen, variants[name]), overrides)
    run = {key: copy.deepcopy(chosen.get(key)) for key in RUN_KEYS}
    run["variant"] = name
    return _resolve_sections(run)


def _resolve_sections(run: dict) -> dict:
    for section in SECTIONS:
        run[section] = _section(run, section)
    cls = model_class(run["model"].get("class", "SAMSVAE"))
    run["model"] = {"class": cls.__name__, **_defaults(cls.__init__, ("self", "adata", "guide")),
                    **{k: v for k, v in run["model"].items() if k != "class"}}
    run["data"] = _resolve_data(run["data"], cls)
    run["train"] = _resolve_keyword_section(run["train"], "train", cls.train)
    run["evaluate"] = _resolve_keyword_section(run["evaluate"], "evaluate", evaluate_run)
    if run["guide"] and "name" not in run["guide"]:
        raise ValueError("guide section without a name; set guide.name (e.g. correlated or mean_field).")
    run["guide"] = run["guide"] or {"name": inspect.signature(cls.__init__).parameters["guide"].default}
    _check_numbers(run)
    return run


def model_class(name: str) -> type[PerturbationModel]:
    """The family registered under ``name`` in :data:`samsvae_pyro.api.FAMILIES` (e.g. ``"SAMSVAE"``)."""
    if not isinstance(name, str) or name not in FAMILIES:
        raise ValueError(f"model.class={name!r} is not a model class of samsvae_pyro.api; available: "
                         f"{', '.join(FAMILIES)}.")
    return FAMILIES[name]


def _section(run: Mapping, section: str) -> dict:
    value = run.get(section)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"section {section} should be a mapping of keys to values, got {value!r}.")
    return dict(value)


def _resolve_data(data: dict, cls: type) -> dict:
    _check_keys(data, DATA_KEYS, "section data")
    source = data.get("source")
    if source not in SOURCES:
        raise ValueError(f"data.source={source!r} is not supported; choose one of {', '.join(SOURCES)}.")
    split = dict(data.get("split") or {"kind": "column"})
    kind = split.pop("kind", None)
    if kind not in SPLITS:
        raise ValueError(f"data.split.kind={kind!r} is not supported; choose one of {', '.join(SPLITS)}.")
    _check_keys(split, tuple(SPLITS[kind]), f"data.split (kind {kind})")
    setup = _resolve_keyword_section(dict(data.get("setup") or {}), "setup", cls.setup_anndata, "data.setup")
    out = {"source": source, "path": _data_path(source, data.get("path")), "setup": setup,
           "split": {"kind": kind, **SPLITS[kind], **split}, "simulate": None}
    if source in SIMULATORS:
        simulator = SIMULATORS[source]
        out["simulate"] = _resolve_keyword_section(dict(data.get("simulate") or {}), source, simulator,
                                                   "data.simulate")
    elif data.get("simulate"):
        raise ValueError(f"data.simulate applies to sources {', '.join(SIMULATORS)}, not {source}; remove it.")
    return out


def _data_path(source: str, path: str | None) -> str | None:
    """Absolute path of the input file, checked to exist (with how to get it when it does not)."""
    if source in SIMULATORS:
        if path is not None:
            raise ValueError(f"data.path does not apply to data.source={source}; remove it or use source h5ad.")
        return None
    defaults = {"norman": datasets.REMOTE_FILES["norman"].filename, "replogle": REPLOGLE_FILTERED}
    if path is None and source not in defaults:
        raise ValueError("data.source=h5ad needs data.path (an .h5ad file); set it with --set data.path=FILE.")
    resolved = Path(path).expanduser() if path is not None else datasets.default_cache_dir() / defaults[source]
    if not resolved.is_file():
        how = {"norman": "download it with `samsvae download norman`",
               "replogle": "build it with samsvae_pyro.data.build_replogle_filtered(gwps_file, out) from the file "
                           "of `samsvae download replogle`",
               "h5ad": "check the path"}[source]
        raise ValueError(f"data.path: {resolved} does not exist; {how}, or set data.path=FILE (--set).")
    return str(resolved.resolve())


def _resolve_keyword_section(values: dict, section: str, function: Callable, where: str | None = None) -> dict:
    """``values`` over the keyword defaults of ``function``; unknown keys are an error naming the valid ones."""
    defaults = _defaults(function, _NOT_CONFIG.get(section, ()))
    _check_keys(values, tuple(defaults), f"section {where or section}")
    return {**defaults, **values}


def _defaults(function: Callable, excluded: Iterable[str]) -> dict:
    """Keyword parameters of ``function`` and their defaults (None where there is none)."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: None if p.default is inspect.Parameter.empty else p.default for p in parameters
            if p.name not in excluded and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _check_keys(values: Mapping, valid: tuple[str, ...], where: str) -> None:
    unknown = [str(key) for key in values if key not in valid]
    if unknown:
        raise ValueError(f"unknown key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} in {where}; "
                         f"valid keys: {', '.join(valid)}.")


def _check_numbers(run: Mapping) -> None:
    """Value checks that would otherwise fail only after data loading or in the middle of a sweep."""
    train, split = run["train"], run["data"]["split"]
    for key in ("max_steps", "batch_size", "n_particles", "val_every"):
        if not (isinstance(train[key], int) and train[key] >= 1):
            raise ValueError(f"train.{key}={train[key]!r} should be a positive integer.")
    for key in ("lr", "weight_decay"):
        if not (isinstance(train[key], (int, float)) and math.isfinite(train[key]) and train[key] >= 0):
            raise ValueError(f"train.{key}={train[key]!r} should be a non-negative number (YAML: 3.0e-4).")
    if "fraction" in split and not (isinstance(split["fraction"], (int, float)) and 0 <= split["fraction"] <= 1):
        raise ValueError(f"data.split.fraction={split['fraction']!r} should be a number in [0, 1].")
    if "seed" in split and not isinstance(split["seed"], int):
        raise ValueError(f"data.split.seed={split['seed']!r} should be an integer.")


def dump_config(config: Mapping, path: str | Path) -> Path:
    """Write a (resolved) config as YAML, keys in their given order."""
    return write_text(path, yaml.safe_dump(plain_config(config), sort_keys=False))


def plain_config(value: Any) -> Any:
    """Plain YAML types (tuples as lists), so that safe_dump accepts every signature default."""
    if isinstance(value, Mapping):
        return {key: plain_config(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config(item) for item in value]
    return value


__all__ = ["apply_overrides", "dump_config", "load_config", "model_class", "parse_overrides", "plain_config",
           "resolve_config"]
