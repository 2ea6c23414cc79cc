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
pickle.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from .history import History
from .rng import RandomState

FORMAT = "llm_tutorial.checkpoint/1"
MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=directory))
    try:
        save_model(unwrap(model), str(staging / "model.safetensors"))
        optimizer_tensors, optimizer_json = _split_optimizer_state(optimizer.state_dict())
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
    """``path`` itself if it is a checkpoint, else the newest complete checkpoint inside it."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    found = list_checkpoints(path)
    return found[-1] if found else None


@dataclass
class Checkpoint:
    """A checkpoint on disk, verified against its manifest, with its JSON state parsed."""

    path: Path
    state: dict[str, Any]

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
        except RuntimeError as error:
            raise ValueError(
                f"the weights in {self.path} do not fit this model ({type(target).__name__}); "
                f"was it built with the checkpoint's config {self.state['model']['config']}? ({error})"
            ) from error

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's ``state_dict``, ready for ``optimizer.load_state_dict``."""
        tensors = load_file(str(self.path / "optimizer.safetensors"))
        return _join_optimizer_state(tensors, self.state["optimizer"])

    def random_state(self) -> RandomState:
        """The saved states of all random generators."""
        return RandomState(tensors=load_file(str(self.path / "rng.safetensors")), numbers=self.state["rng"])

    def build_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Rebuild the model from its saved class and config, load the weights, put it on ``device``.

        Only classes inside ``llm_tutorial`` are rebuilt: a checkpoint names a class, and importing
        arbitrary names from a file would be as unsafe as unpickling it."""
        described = self.state["model"]
        if described["config"] is None:
            raise ValueError(
                f"the model in {self.path} ({described['class']}) has no dataclass config, so it cannot be "
                "rebuilt from the checkpoint; build it yourself and call Checkpoint.load_weights(model)"
            )
        model_class = _import_package_class(described["class"])
        config_class = _import_package_class(described["config_class"])
        model = model_class(config_class(**described["config"])).to(device)
        self.load_weights(model)
        return model


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at ``path``, or the newest complete one in the run directory ``path``.

    Every file is checked against the manifest (size and SHA-256) before anything is used, so a
    damaged checkpoint fails here, naming the file, rather than resuming from garbage."""
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(
            f"no complete checkpoint in {path} (a checkpoint is a step_XXXXXXXX directory with a {MANIFEST})"
        )
    manifest = json.loads((found / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{found} has checkpoint format {manifest.get('format')!r}; this version reads {FORMAT!r}")
    for file, record in manifest["files"].items():
        if not (found / file).is_file():
            raise ValueError(f"checkpoint {found} is damaged: {file} is missing")
        if _file_record(found / file) != record:
            raise ValueError(f"checkpoint {found} is damaged: {file} does not match its size/SHA-256 in {MANIFEST}")
    return Checkpoint(path=found, state=json.loads((found / "state.json").read_text()))


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


def _import_package_class(qualified: str) -> type:
    module_name, _, class_name = qualified.partition(":")
    if not (module_name == "llm_tutorial" or module_name.startswith("llm_tutorial.")):
        raise ValueError(f"refusing to rebuild {qualified!r}: only classes of the llm_tutorial package are rebuilt")
    found = importlib.import_module(module_name)
    for part in class_name.split("."):
        found = getattr(found, part)
    return found


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
