"""A saved model on disk: ``config.json`` (how to rebuild it) and ``checkpoint.pt`` (its parameters).

Both files are written to temporary names in the target directory and renamed into place together
(:func:`samsvae_pyro.files.replace_together`), so a directory holds either the previous complete save
or the new one (a process killed between the two renames leaves the previous checkpoint next to the
new one, and loading picks the one whose checksum the config records). ``config.json`` records the
SHA-256 of ``checkpoint.pt``; loading verifies it, so a truncated, emptied or altered checkpoint is a :class:`SavedModelError` naming the file, never a
deserialisation traceback. A run directory (:mod:`samsvae_pyro.runs.layout`) holds these two files
plus the history, the experiment config and the reports.

A model with a custom guide (a factory or a guide module) saves like any other; its config records
the guide's name, and loading needs the same factory again (``load(dir, adata, guide=factory)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from samsvae_pyro.files import previous_version, replace_together, sha256, temporary_path

if TYPE_CHECKING:
    from samsvae_pyro.api.base import PerturbationModel

CHECKPOINT, MODEL_CONFIG = "checkpoint.pt", "config.json"
CHECKSUM = "checkpoint_sha256"
CUSTOM_GUIDE = "custom"  # config["guide"] = {"custom": name} for a guide given as a factory or module
_CONFIG_KEYS = ("class", "model_kwargs", "guide", "guide_kwargs", "setup", "vocabulary", "var_names")
_STATE_KEYS = ("model", "guide", "trainer")
_RETRAIN = "re-run the training that wrote it (or save the model again)"


class SavedModelError(ValueError):
    """A file of a saved model is missing, damaged, or from an incompatible version; the message names it."""


def save_model(model: PerturbationModel, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model``'s checkpoint and config to ``directory``, both or neither (see the module docstring)."""
    directory = Path(directory)
    if (directory / CHECKPOINT).exists() and not overwrite:
        raise ValueError(f"{directory} already holds a saved model; pass overwrite=True to replace it.")
    with temporary_path(directory / CHECKPOINT) as checkpoint, temporary_path(directory / MODEL_CONFIG) as config:
        torch.save({"model": model.model.state_dict(), "guide": model.guide.state_dict(),
                    "trainer": model.trainer_state}, checkpoint)
        config.write_text(json.dumps({**model_config(model), CHECKSUM: sha256(checkpoint)}, indent=2))
        replace_together([(checkpoint, directory / CHECKPOINT), (config, directory / MODEL_CONFIG)])
    return directory


def model_config(model: PerturbationModel) -> dict[str, Any]:
    """What :func:`load_model` needs to rebuild ``model``: class, arguments, guide, setup and design."""
    guide = model.guide_spec if isinstance(model.guide_spec, str) else {CUSTOM_GUIDE: guide_name(model.guide_spec)}
    return {"class": type(model).__name__, "model_kwargs": model.model_kwargs, "guide": guide,
            "guide_kwargs": model.guide_kwargs, "setup": model.setup,
            "vocabulary": model.data.vocabulary.to_dict(), "var_names": list(map(str, model.data.var_names))}


def guide_name(guide: Any) -> str:
    """A readable name of a custom guide: a factory's qualified name, or a module's class name."""
    if isinstance(guide, torch.nn.Module):
        return type(guide).__name__
    return getattr(guide, "__qualname__", type(guide).__name__)


def read_model_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved model; :class:`SavedModelError` naming the file if it is unusable."""
    path = Path(directory) / MODEL_CONFIG
    if not path.is_file():
        raise SavedModelError(f"{path} does not exist: {directory} holds no saved model (save one with "
                              "model.save(dir), `samsvae train` or `samsvae demo`).")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SavedModelError(f"{path} is damaged (not valid JSON: {error}); {_RETRAIN}.") from error
    missing = [key for key in _CONFIG_KEYS if key not in config] if isinstance(config, dict) else list(_CONFIG_KEYS)
    if missing:
        raise SavedModelError(f"{path} lacks {', '.join(missing)}: it is damaged or from an incompatible version; "
                              f"{_RETRAIN}.")
    return config


def guide_for_load(config: dict[str, Any], guide: str | Callable | torch.nn.Module | None, directory: Path):
    """The guide to rebuild with: the saved name, or the user's factory for a model saved with a custom guide."""
    saved = config["guide"]
    if isinstance(saved, str):
        if guide is not None and guide != saved:
            raise ValueError(f"{directory} was saved with the registered guide {saved!r}; load it without guide=.")
        return saved
    if guide is None:
        name = saved.get(CUSTOM_GUIDE, "?") if isinstance(saved, dict) else "?"
        raise ValueError(f"{directory} was saved with a custom guide ({name}); pass the same guide factory (or a "
                         f"fresh guide module) again: {config['class']}.load(dir, adata, guide={name}).")
    return guide


def read_checkpoint(directory: str | Path, config: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The parameters saved with ``config``; :class:`SavedModelError` if the file is missing or damaged."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        raise SavedModelError(f"{path} does not exist: the saved model in {directory} is incomplete; {_RETRAIN}.")
    if CHECKSUM in config and sha256(path) != config[CHECKSUM]:
        previous = previous_version(path)  # a save killed between its two renames leaves the old checkpoint here
        if not (previous.is_file() and sha256(previous) == config[CHECKSUM]):
            raise SavedModelError(f"{path} is damaged: its checksum differs from the one recorded in "
                                  f"{Path(directory) / MODEL_CONFIG} (truncated, emptied or altered); {_RETRAIN}.")
        path = previous
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError...
        raise SavedModelError(f"{path} cannot be read ({type(error).__name__}): it is damaged or from an "
                              f"incompatible version; {_RETRAIN}.") from error
    if not (isinstance(state, dict) and all(key in state for key in _STATE_KEYS)):
        raise SavedModelError(f"{path} is not a checkpoint of samsvae_pyro (it lacks {', '.join(_STATE_KEYS)}); "
                              f"{_RETRAIN}.")
    return state


def load_state(model: PerturbationModel, state: dict[str, Any], path: Path) -> None:
    """Put saved parameters into a rebuilt model; :class:`SavedModelError` when they do not fit it."""
    try:
        model.model.load_state_dict(state["model"])
        model.guide.load_state_dict(state["guide"])
    except RuntimeError as error:
        raise SavedModelError(f"the parameters in {path} do not fit the model rebuilt from its config.json "
                              f"(an incompatible version, or a different custom guide): {error}") from error
    model.trainer_state = state["trainer"]
