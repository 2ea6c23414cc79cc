"""Input checks that speak to a learner: what was expected, what came, and what to do.

Every public function of the package validates its arguments with these helpers, so a wrong shape
fails at the call that caused it, with a message naming the argument, instead of deep inside a
matrix multiply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def check_tensor(x: object, name: str) -> torch.Tensor:
    """``x`` must be a ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_rank(x: torch.Tensor, name: str, rank: int | Sequence[int], layout: str = "") -> None:
    """``x.ndim`` must be ``rank`` (or one of several ranks). ``layout`` such as ``"(B, T)"``
    is quoted in the message."""
    check_tensor(x, name)
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    if x.ndim not in ranks:
        want = " or ".join(str(r) for r in ranks)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have {want} dimensions{hint}, got shape {tuple(x.shape)}")


def check_min_rank(x: torch.Tensor, name: str, rank: int, layout: str = "") -> None:
    """``x`` must have at least ``rank`` dimensions."""
    check_tensor(x, name)
    if x.ndim < rank:
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have at least {rank} dimensions{hint}, got shape {tuple(x.shape)}")


def check_last_dim(x: torch.Tensor, name: str, size: int) -> None:
    """The last dimension of ``x`` must be ``size`` (e.g. the model width)."""
    if x.shape[-1] != size:
        raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")


def check_dtype(x: torch.Tensor, name: str, dtypes: Sequence[torch.dtype] | torch.dtype) -> None:
    """``x.dtype`` must be one of ``dtypes``."""
    allowed = (dtypes,) if isinstance(dtypes, torch.dtype) else tuple(dtypes)
    if x.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{name} must have dtype {names}, got {str(x.dtype).replace('torch.', '')}")


def check_same_device(tensors: dict[str, torch.Tensor]) -> None:
    """The named tensors must sit on one device (a meta tensor beside a CPU one is an error, not an answer)."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"all inputs must be on the same device, got {listed}; move them with .to(device)")


def check_same_dtype_and_device(tensors: dict[str, torch.Tensor]) -> None:
    """The named tensors must share one dtype and one device."""
    if len({t.dtype for t in tensors.values()}) > 1:
        raise TypeError(
            f"{_and(list(tensors))} must share one dtype, got {_and([str(t.dtype) for t in tensors.values()])}; "
            "convert them with .to(dtype)"
        )
    check_same_device(tensors)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def check_floating(x: torch.Tensor, name: str) -> None:
    """``x`` must hold floating-point numbers."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {str(x.dtype).replace('torch.', '')}")


def check_token_ids(ids: torch.Tensor, name: str, vocab_size: int) -> None:
    """``ids`` must be integer token ids in ``[0, vocab_size)``."""
    check_tensor(ids, name)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name} must hold integer token ids (torch.long), got {str(ids.dtype).replace('torch.', '')}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} has token ids outside [0, {vocab_size}): min {int(ids.min())}, max {int(ids.max())}. "
            "Was it encoded with a different tokenizer or vocabulary size?"
        )


def check_labels(labels: torch.Tensor, name: str, num_classes: int, ignore_index: int) -> None:
    """``labels`` must be integer class ids in ``[0, num_classes)``, or ``ignore_index`` at the
    positions that no loss scores."""
    check_tensor(labels, name)
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer class ids (torch.long), got {str(labels.dtype).replace('torch.', '')}")
    scored = labels[labels != ignore_index]
    if scored.numel() and (int(scored.min()) < 0 or int(scored.max()) >= num_classes):
        raise ValueError(
            f"{name} must hold ids in [0, {num_classes}) or {ignore_index} (ignored); got min {int(scored.min())}, "
            f"max {int(scored.max())}. Do the logits and the labels use the same vocabulary?"
        )


def check_generator(generator: object, name: str = "generator") -> None:
    """``generator`` must be a ``torch.Generator`` or ``None`` (PyTorch's global random state)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None, got {type(generator).__name__}; "
            "make one with torch.Generator().manual_seed(seed)"
        )


def check_int(value: object, name: str, low: int | None = None, high: int | None = None, *, hint: str = "") -> int:
    """``value`` must be an int (a bool is not one) with ``low ≤ value ≤ high``; either bound may
    be None. ``hint`` is appended to the message, e.g. ``" (a token id)"``."""
    if (not isinstance(value, int) or isinstance(value, bool)
            or (low is not None and value < low) or (high is not None and value > high)):
        raise ValueError(f"{name} must be {_integer_words(low, high)}{hint}, got {value!r}")
    return value


def check_number(
    value: object, name: str, low: float | None = None, high: float | None = None, *, above: bool = False,
    hint: str = "",
) -> float:
    """``value`` must be a finite real number (a bool is not one) with ``low ≤ value ≤ high``
    (``low < value`` when ``above``); either bound may be None. NaN and ±∞ never pass: a NaN
    epsilon or an infinite base would turn every output into NaN far from the mistake."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if above else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise ValueError(f"{name} must be {_number_words(low, high, above)}{hint}, got {value!r}")
    return float(value)


def check_positive_int(value: object, name: str) -> int:
    """``value`` must be an int ≥ 1."""
    return check_int(value, name, 1)


def check_positive_number(value: object, name: str) -> float:
    """``value`` must be a finite real number > 0 (a temperature, a loss weight, a norm's eps)."""
    return check_number(value, name, 0, above=True)


def check_probability(value: float, name: str, *, inclusive_high: bool = True) -> float:
    """``value`` must lie in [0, 1] (or [0, 1) when ``inclusive_high`` is false)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value
    if not (ok and (value <= 1.0 if inclusive_high else value < 1.0)):
        bracket = "]" if inclusive_high else ")"
        raise ValueError(f"{name} must be a probability in [0, 1{bracket}, got {value!r}")
    return float(value)


def check_token_id(value: object, name: str, vocab_size: int | None = None, *, hint: str = "") -> int:
    """A single token id: an int in ``[0, vocab_size)`` (or ``≥ 0`` when no size is given)."""
    if (not isinstance(value, int) or isinstance(value, bool) or value < 0
            or (vocab_size is not None and value >= vocab_size)):
        bound = f"in [0, {vocab_size})" if vocab_size is not None else "≥ 0"
        raise ValueError(f"{name} must be a token id, an integer {bound}{hint}, got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    """``value`` must be True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _integer_words(low: int | None, high: int | None) -> str:
    if high is not None:
        return f"an integer in [{low}, {high}]" if low is not None else f"an integer ≤ {high}"
    return {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer ≥ {low}")


def _number_words(low: float | None, high: float | None, above: bool) -> str:
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return "a positive number" if (low == 0 and above) else f"a number {'>' if above else '≥'} {low}"
    return f"a number in {'(' if above else '['}{low}, {high}]" if low is not None else f"a number ≤ {high}"


def check_divides(divisor: int, dividend: int, divisor_name: str, dividend_name: str) -> None:
    """``divisor`` must divide ``dividend`` (e.g. the number of heads must divide the width)."""
    if divisor <= 0 or dividend % divisor != 0:
        raise ValueError(
            f"{divisor_name}={divisor} must divide {dividend_name}={dividend} "
            f"(try a {divisor_name} among {[d for d in range(1, dividend + 1) if dividend % d == 0][:12]})"
        )


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
