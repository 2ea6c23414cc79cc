"""A whole training run in one file: which model, which data, how to train.

The command line reads a YAML file (or a named preset) with three sections::

    model:            # a GPT: a preset ("gpt2" or "llama") and any GPTConfig field to override
      preset: gpt2
      n_layer: 4
    data:             # the corpus and how to tokenise it
      corpus: tinyshakespeare
      tokenizer: char
    train:            # any TrainConfig field
      max_steps: 2000

Every key is checked against the dataclass it fills, so a typo (``lerning_rate``) is an error that
names the key and suggests the closest valid one, instead of a setting silently ignored. Values
are converted to the field's type where that is unambiguous: YAML reads ``1e-3`` as a string, and
a float field accepts it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .._checks import check_choice, check_int, check_probability
from ..models.gpt import GPT_PRESETS, GPTConfig
from .trainer_config import TrainConfig

TOKENIZERS = ("char", "gpt2")
DEVICE_TYPES = ("cpu", "cuda", "mps")
SECTIONS = ("model", "data", "train", "device")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PRESETS: dict[str, Path] = {path.stem.replace("_", "-"): path for path in sorted(CONFIG_DIR.glob("*.yaml"))}
"""Named runs, one YAML file each in ``llm_tutorial/configs/`` (``shakespeare_char.yaml`` is the
preset ``shakespeare-char``). ``shakespeare-char``: the character-level GPT-2-style model of the
benchmarks (4 layers, 4 heads, width 128, context 64; the training settings are
:class:`TrainConfig`'s defaults); ``shakespeare-char-llama``: the same size in the Llama style
(RoPE, RMSNorm, SwiGLU, 2 key/value heads)."""


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes token ids.

    ``corpus``: a named corpus of :mod:`llm_tutorial.data` (``tinyshakespeare``) or the path of a
    UTF-8 text file. ``tokenizer``: ``"char"`` (the corpus's own characters) or ``"gpt2"``
    (GPT-2's byte-level BPE). The last ``val_fraction`` of the text is held out for validation.
    ``context_length``: tokens per training window; ``None`` means the model's context length.
    ``context_warmup_steps``: a sequence-length warm-up — the training window grows linearly from
    ``context_warmup_start`` tokens to the full window over this many steps (0: no warm-up).
    """

    corpus: str = "tinyshakespeare"
    tokenizer: str = "char"
    val_fraction: float = 0.1
    context_length: int | None = None
    context_warmup_steps: int = 0
    context_warmup_start: int = 16

    def __post_init__(self) -> None:
        check_choice(self.tokenizer, "tokenizer", TOKENIZERS)
        check_probability(self.val_fraction, "val_fraction", inclusive_high=False)
        if self.val_fraction == 0:
            raise ValueError("val_fraction must be > 0: validation needs some held-out text")
        if self.context_length is not None and (
                not isinstance(self.context_length, int) or self.context_length < 1):
            raise ValueError(f"context_length must be a positive integer or null, got {self.context_length!r}")
        check_int(self.context_warmup_steps, "context_warmup_steps", 0)
        check_int(self.context_warmup_start, "context_warmup_start", 1)


@dataclass
class RunConfig:
    """A training run: ``model`` (a GPT preset name under ``"preset"`` plus GPTConfig overrides;
    ``vocab_size`` comes from the tokenizer), ``data``, ``train``, and the ``device``
    (``None``: the best available)."""

    model: dict[str, Any] = field(default_factory=lambda: {"preset": "gpt2"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready dictionary, the inverse of :func:`run_config_from_dict`."""
        return {"model": copy.deepcopy(self.model), "data": dataclasses.asdict(self.data),
                "train": self.train.to_dict(), "device": self.device}


def run_config_from_dict(values: dict[str, Any], source: str = "config") -> RunConfig:
    """Check and convert a parsed config (sections ``model``, ``data``, ``train``, ``device``).

    ``source`` (a file name or preset) is quoted in error messages."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: a config must be a mapping with sections {', '.join(SECTIONS)}, "
                         f"got {type(values).__name__}")
    _reject_unknown(values, SECTIONS, source)
    model = _model_section(values.get("model") or {}, source)
    data = _build(DataConfig, values.get("data") or {}, f"{source}: data")
    train = _build(TrainConfig, values.get("train") or {}, f"{source}: train")
    device = values.get("device")
    check_device(device, f"{source}: device", available=False)
    return RunConfig(model=model, data=data, train=train, device=device)


def load_run_config(config: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The run named by ``config``, a preset name or a YAML file, with ``overrides`` applied.

    Each override is ``section.key=value`` (e.g. ``train.lr=3e-4``, ``model.n_layer=2``); the
    value is read as YAML, so ``true``, ``null``, ``[0.9, 0.95]`` work."""
    name = str(config)
    path = PRESETS.get(name, Path(name))
    if path.is_file():
        values = _parse_yaml(path.read_bytes(), str(path)) or {}
    else:
        raise ValueError(f"--config {name!r} is neither a YAML file nor a preset; presets: {', '.join(PRESETS)}")
    if not isinstance(values, dict):
        raise ValueError(f"{name}: a config file must hold a mapping with sections {', '.join(SECTIONS)}")
    return run_config_from_dict(apply_overrides(values, overrides), source=name)


def apply_overrides(values: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``values`` with each ``section.key=value`` (or ``device=value``) set."""
    values = copy.deepcopy(values)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value (e.g. train.lr=3e-4), got {override!r}")
        parsed = _parse_yaml(text.encode(), f"--set {override!r}") if text else None
        section, dot, field_name = key.partition(".")
        if not dot:
            if key != "device":
                raise ValueError(f"--set {override!r}: name a field as section.key, e.g. train.{key}=...; "
                                 f"sections: {', '.join(SECTIONS)}")
            values["device"] = parsed
            continue
        if section not in ("model", "data", "train"):
            raise ValueError(f"--set {override!r}: unknown section {section!r}; sections: model, data, train")
        values.setdefault(section, {})
        if not isinstance(values[section], dict):
            values[section] = {}
        values[section][field_name] = parsed
    return values


def check_device(device: object, where: str = "device", *, available: bool = True) -> None:
    """``device`` must be ``None`` (the best available) or name a device this package runs on:
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. With ``available`` it must also exist on this machine,
    so that a run asking for a GPU it does not have fails before any work, not deep in torch."""
    if device is None:
        return
    hint = "use cpu, cuda, cuda:N or mps, or leave it unset for the best available"
    if not isinstance(device, str):
        raise ValueError(f"{where} must be a string such as 'cpu' or 'cuda', got {device!r}; {hint}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{where} {device!r} is not a device; {hint}") from None
    if parsed.type not in DEVICE_TYPES:
        raise ValueError(f"{where} {device!r}: this package runs on {', '.join(DEVICE_TYPES)}; {hint}")
    if not available:
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"{where} {device!r} asks for a CUDA GPU, but {build} on this machine; use cpu, or "
                             "leave the device unset")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{where} {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{where} {device!r} asks for Apple's MPS, which this machine lacks; use cpu")


def _parse_yaml(content: bytes, source: str) -> Any:
    """YAML text → Python values; a syntax error or a binary file names the source and line."""
    try:
        return yaml.safe_load(content.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{source} is not UTF-8 text (byte {error.start}); is it a YAML file?") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{source} is not valid YAML{where}: {problem}") from error


def _model_section(values: dict[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ValueError(f"{source}: model must be a mapping of GPTConfig fields, got {values!r}")
    values = dict(values)
    preset = values.pop("preset", "gpt2")
    if preset not in GPT_PRESETS:
        raise ValueError(f"{source}: unknown model preset {preset!r}; choose one of {', '.join(GPT_PRESETS)}")
    if "vocab_size" in values:
        raise ValueError(f"{source}: model.vocab_size is set by the tokenizer; remove it")
    names = [f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"]
    _reject_unknown(values, names, f"{source}: model")
    hints = typing.get_type_hints(GPTConfig)
    fields = {k: _coerce(v, hints[k], f"{source}: model.{k}") for k, v in values.items()}
    try:
        GPTConfig.preset(preset, **fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: model: {error}") from error
    return {"preset": preset, **fields}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping of {cls.__name__} fields, got {values!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    _reject_unknown(values, names, where)
    hints = typing.get_type_hints(cls)
    fields = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from error


def _reject_unknown(values: dict[str, Any], known: typing.Sequence[str], where: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(known)}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the annotated type ``hint`` where unambiguous, else an error."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{where} cannot be null")
    for option in options:
        if option is type(None):
            continue
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and not isinstance(value, bool):
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            return tuple(_coerce(v, item, f"{where}[{i}]") for i, (v, item) in enumerate(zip(value, typing.get_args(option))))
    wanted = " or ".join(_TYPE_NAMES.get(typing.get_origin(o) or o, str(o)) for o in options if o is not type(None))
    raise ValueError(f"{where} must be {wanted}, got {value!r}")


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list"}
