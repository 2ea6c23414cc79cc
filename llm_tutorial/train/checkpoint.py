"""Checkpoints that survive a crash at any instant, and load without unpickling anything.

A checkpoint is a directory ``step_00000500/`` holding

- ``model.safetensors`` and ``optimizer.safetensors``: every tensor (weights, Adam's moments);
- ``rng.safetensors``: the random generators' states as byte tensors (see :mod:`.rng`);
- ``state.json``: step, configs, history, optimizer hyper-parameters, the rest of the RNG state;
- ``manifest.json``: each file's size and SHA-256, written last.

It is written into a hidden temporary directory next to its final place, every file flushed to
disk (``fsync``), then renamed into place in one atomic step. A process killed while writing leaves
only a hidden temporary directory behind, never a half-written ``step_*``: the previous checkpoint
stays the newest complete one. Older checkpoints beyond ``keep`` are deleted only after the new one
is in place.

Loading reads safetensors and JSON only; neither format can run code, unlike ``torch.load`` of a
pickle. A checkpoint names its model's class, and :meth:`Checkpoint.build_model` rebuilds only the
classes of :data:`MODEL_CLASSES`, an explicit list: importing whatever name a file holds would be
as unsafe as unpickling it (``os:system`` is a name too).

A checkpoint is never written with a non-finite weight or optimizer moment (:class:`NonFiniteStateError`),
so "the newest checkpoint" is always one worth resuming from. Resuming from a run directory takes
the newest checkpoint that verifies (manifest, sizes, SHA-256, readable files) and names each newer
one it skipped and why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from .history import History
from .rng import RandomState

FORMAT = "llm_tutorial.checkpoint/1"
MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")

MODEL_CLASSES = {
    "llm_tutorial.models.gpt:GPT": ("llm_tutorial.models.gpt", "GPT", "GPTConfig"),
    "llm_tutorial.models.transformer:Transformer": ("llm_tutorial.models.transformer", "Transformer",
                                                    "TransformerConfig"),
    "llm_tutorial.models.bert:Bert": ("llm_tutorial.models.bert", "Bert", "BertConfig"),
    "llm_tutorial.models.qa:BertForSpanQA": ("llm_tutorial.models.qa", "BertForSpanQA", "BertConfig"),
    "llm_tutorial.models.electra:Electra": ("llm_tutorial.models.electra", "Electra", "ElectraConfig"),
    "llm_tutorial.models.neural_lm:FeedForwardLM": ("llm_tutorial.models.neural_lm", "FeedForwardLM",
                                                    "FeedForwardLMConfig"),
}
"""The only models a checkpoint may ask :meth:`Checkpoint.build_model` to rebuild: the name a
checkpoint stores, and the module, model class and config class it stands for. Nothing outside
this table is ever imported or called because a file named it."""


class NonFiniteStateError(ValueError):
    """A weight or optimizer moment is NaN or infinite: such a state is never written."""

    def __init__(self, names: list[str]) -> None:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        super().__init__(f"refusing to write a checkpoint: {len(names)} tensor(s) hold NaN or infinite values "
                         f"({shown})")
        self.names = names


class DamagedCheckpointError(ValueError):
    """A checkpoint's files do not match its manifest, or cannot be read."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``DistributedDataParallel`` and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def model_description(model: nn.Module) -> dict[str, Any]:
    """The model's class and, when it has a dataclass ``config``, that config: enough to rebuild it."""
    model = unwrap(model)
    config = getattr(model, "config", None)
    described = {"class": _qualified_name(type(model)), "config_class": None, "config": None}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        described["config_class"] = _qualified_name(type(config))
        described["config"] = dataclasses.asdict(config)
    return described


def save_checkpoint(
    directory: str | Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    random_state: RandomState,
    history: History,
    train_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` into ``directory`` atomically; keep the newest ``keep``.

    ``extra`` holds any other JSON-ready state (loss-scaler state, wall time, the run's
    configuration, the tokenizer's vocabulary, ...). Returns the checkpoint's directory.
    """
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be a positive integer (the last good checkpoint is always kept), got {keep!r}")
    bad = non_finite_state(model, optimizer)
    if bad:
        raise NonFiniteStateError(bad)
    optimizer_tensors, optimizer_json = _split_optimizer_state(optimizer.state_dict())
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=directory))
    try:
        save_model(unwrap(model), str(staging / "model.safetensors"))
        save_file(optimizer_tensors, str(staging / "optimizer.safetensors"))
        save_file(random_state.tensors, str(staging / "rng.safetensors"))
        state = {
            "format": FORMAT,
            "step": step,
            "model": model_description(model),
            "optimizer": optimizer_json,
            "rng": random_state.numbers,
            "train_config": train_config,
            "history": history.to_dict(),
            "extra": extra or {},
        }
        (staging / "state.json").write_text(json.dumps(state))
        files = sorted(p.name for p in staging.iterdir())
        for file in files:
            _fsync_file(staging / file)
        manifest = {"format": FORMAT, "step": step,
                    "files": {file: _file_record(staging / file) for file in files}}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _fsync_file(staging / MANIFEST)
        _fsync_dir(staging)
        _move_into_place(staging, directory / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(directory)
    _prune(directory, keep)
    return directory / name


def list_checkpoints(directory: str | Path) -> list[Path]:
    """The complete checkpoints in ``directory`` (those with a manifest), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _STEP_DIR.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(path: str | Path) -> Path | None:
    """``path`` itself if it is a checkpoint, else the newest complete checkpoint inside it
    (complete: it has a manifest; :func:`load_checkpoint` also verifies it)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    found = list_checkpoints(path)
    return found[-1] if found else None


class CheckpointSkippedWarning(UserWarning):
    """A newer checkpoint failed verification, so an older one was loaded."""


@dataclass
class Checkpoint:
    """A checkpoint on disk, verified against its manifest, with its JSON state parsed.

    ``skipped`` lists the newer checkpoints of the run directory that failed verification, each
    with the reason, when this one was chosen in their place."""

    path: Path
    state: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def history(self) -> History:
        return History.from_dict(self.state["history"])

    @property
    def train_config(self) -> dict[str, Any]:
        return self.state["train_config"]

    @property
    def extra(self) -> dict[str, Any]:
        return self.state["extra"]

    def load_weights(self, model: nn.Module) -> None:
        """Copy the saved weights into ``model`` (names and shapes must match exactly)."""
        target = unwrap(model)
        device = next(target.parameters()).device
        try:
            load_model(target, str(self.path / "model.safetensors"), strict=True, device=str(device))
        except SafetensorError as error:
            raise DamagedCheckpointError(f"checkpoint {self.path} is damaged: model.safetensors cannot be read "
                                         f"({error})") from error
        except RuntimeError as error:
            raise ValueError(
                f"the weights in {self.path} do not fit this model ({type(target).__name__}); "
                f"was it built with the checkpoint's config {self.state['model']['config']}? ({error})"
            ) from error

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's ``state_dict``, ready for ``optimizer.load_state_dict``."""
        tensors = self._tensors("optimizer.safetensors")
        try:
            return _join_optimizer_state(tensors, self.state["optimizer"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DamagedCheckpointError(f"checkpoint {self.path} is damaged: its optimizer state is malformed "
                                         f"({type(error).__name__}: {error})") from error

    def random_state(self) -> RandomState:
        """The saved states of all random generators."""
        return RandomState(tensors=self._tensors("rng.safetensors"), numbers=self.state["rng"])

    def _tensors(self, file: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(self.path / file))
        except SafetensorError as error:
            raise DamagedCheckpointError(f"checkpoint {self.path} is damaged: {file} cannot be read ({error})") from error

    def build_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Rebuild the model from its saved class and config, load the weights, put it on ``device``.

        Only the classes of :data:`MODEL_CLASSES` are rebuilt: a checkpoint names a class, and
        importing whatever name a file holds would be as unsafe as unpickling it."""
        described = self.state["model"]
        name = described.get("class")
        if name not in MODEL_CLASSES:
            raise ValueError(
                f"refusing to rebuild {name!r} named by {self.path / 'state.json'}: a checkpoint may only name one "
                f"of the package's models ({', '.join(sorted(MODEL_CLASSES))}). Build the model yourself and call "
                "Checkpoint.load_weights(model)"
            )
        if described.get("config") is None:
            raise ValueError(
                f"the model in {self.path} ({name}) has no dataclass config, so it cannot be "
                "rebuilt from the checkpoint; build it yourself and call Checkpoint.load_weights(model)"
            )
        module_name, model_name, config_name = MODEL_CLASSES[name]
        if described.get("config_class") != f"{module_name}:{config_name}":
            raise ValueError(f"refusing to rebuild {name} with config class {described.get('config_class')!r} "
                             f"(from {self.path / 'state.json'}): its config is {module_name}:{config_name}")
        if not isinstance(described["config"], dict):
            raise ValueError(f"the model config in {self.path / 'state.json'} must be a mapping of fields, "
                             f"got {type(described['config']).__name__}")
        module = importlib.import_module(module_name)
        try:
            config = getattr(module, config_name)(**described["config"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"the model config in {self.path / 'state.json'} is not a valid {config_name}: "
                             f"{error}") from error
        model = getattr(module, model_name)(config).to(device)
        self.load_weights(model)
        return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at ``path``, or the newest one that verifies in the run directory ``path``.

    Every file is checked against the manifest (size and SHA-256), the JSON parsed and the
    safetensors headers read before anything is used, so a damaged checkpoint fails here, naming
    the file, rather than resuming from garbage. In a run directory a damaged newest checkpoint
    is skipped, with a :class:`CheckpointSkippedWarning` saying why, for the newest good one."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return _verified(path)
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(
            f"no complete checkpoint in {path} (a checkpoint is a step_XXXXXXXX directory with a {MANIFEST})"
        )
    skipped: list[tuple[Path, str]] = []
    for candidate in reversed(found):
        try:
            checkpoint = _verified(candidate)
        except DamagedCheckpointError as error:
            skipped.append((candidate, str(error)))
            continue
        for bad, why in skipped:
            warnings.warn(f"skipped {bad.name}: {why}; using {candidate.name}", CheckpointSkippedWarning, stacklevel=2)
        checkpoint.skipped = skipped
        return checkpoint
    reasons = "; ".join(f"{bad.name}: {why}" for bad, why in skipped)
    raise DamagedCheckpointError(f"no checkpoint in {path} verifies ({reasons})")


_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
_STATE_KEYS = ("format", "step", "model", "optimizer", "rng", "train_config", "history", "extra")


def _verified(directory: Path) -> Checkpoint:
    """The checkpoint in ``directory`` after every check; :class:`DamagedCheckpointError` if one fails."""
    def damaged(why: str) -> DamagedCheckpointError:
        return DamagedCheckpointError(f"checkpoint {directory} is damaged: {why}")

    manifest = _read_json(directory / MANIFEST, damaged)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise damaged(f"{directory / MANIFEST} has format {found!r}; this version reads {FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or sorted(files) != sorted(_FILES):
        raise damaged(f"{directory / MANIFEST} must list exactly the files {', '.join(_FILES)}")
    for file, record in files.items():
        if not (directory / file).is_file():
            raise damaged(f"{file} is missing")
        if _file_record(directory / file) != record:
            raise damaged(f"{file} does not match its size/SHA-256 in {MANIFEST}")
    state = _read_json(directory / "state.json", damaged)
    if not isinstance(state, dict) or any(key not in state for key in _STATE_KEYS):
        raise damaged(f"{directory / 'state.json'} must be a mapping with the keys {', '.join(_STATE_KEYS)}")
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or step != manifest.get("step"):
        raise damaged(f"{directory / 'state.json'} holds step {step!r}, its manifest {manifest.get('step')!r}")
    described = state["model"]
    if not isinstance(described, dict) or any(key not in described for key in ("class", "config_class", "config")):
        raise damaged(f"{directory / 'state.json'}: 'model' must name its class, config_class and config")
    try:
        History.from_dict(state["history"])
    except (TypeError, ValueError) as error:
        raise damaged(f"{directory / 'state.json'}: the history is malformed ({error})") from error
    for file in _FILES[:3]:
        try:
            with safe_open(str(directory / file), "pt") as opened:
                opened.keys()
        except SafetensorError as error:
            raise damaged(f"{file} cannot be read ({error})") from error
    return Checkpoint(path=directory, state=state)


def _read_json(path: Path, damaged: Callable[[str], Exception]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise damaged(f"{path} is not valid JSON ({error})") from error


def non_finite_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the weights, buffers and optimizer moments holding a NaN or an infinity."""
    state = dict(unwrap(model).state_dict())
    tensors, _ = _split_optimizer_state(optimizer.state_dict())
    state.update({f"optimizer.{name}": tensor for name, tensor in tensors.items()})
    return non_finite_tensors(state)


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity (one host read per device)."""
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel():
            by_device.setdefault(tensor.device, []).append((name, tensor))
    bad = []
    for named in by_device.values():
        finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in named]).tolist()
        bad += [name for (name, _), ok in zip(named, finite) if not ok]
    return bad


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of ``optimizer.state_dict()`` as ``"{param index}.{name}"``; the rest for JSON."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous()
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain_state": plain}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in saved["plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else dict(g) for g in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _file_record(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _fsync_file(path: Path) -> None:
    with path.open("r+b") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX only: Windows cannot open a directory to sync it)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``. A stale ``final`` (left by an abandoned run resumed from an
    earlier step) is first renamed aside, so at no instant is there a partial ``final``."""
    if final.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".stale-{final.name}.", dir=final.parent))
        os.replace(final, stale / final.name)
        os.replace(staging, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(staging, final)


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and temporary directories of killed writes."""
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in directory.glob(".step_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in directory.glob(".stale-*"):
        shutil.rmtree(leftover, ignore_errors=True)
