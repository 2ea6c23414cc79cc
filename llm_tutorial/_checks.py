"""Input checks that speak to a learner: what was expected, what came, and what to do.

Every public function of the package validates its arguments with these helpers, so a wrong shape
fails at the call that caused it, with a message naming the argument, instead of deep inside a
matrix multiply.
"""

from __future__ import annotations

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


def check_positive_int(value: object, name: str) -> int:
    """``value`` must be an int ≥ 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_positive_number(value: object, name: str) -> float:
    """``value`` must be a real number > 0 (a temperature, a loss weight, a norm's eps)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_probability(value: float, name: str, *, inclusive_high: bool = True) -> float:
    """``value`` must lie in [0, 1] (or [0, 1) when ``inclusive_high`` is false)."""
    high_ok = value <= 1.0 if inclusive_high else value < 1.0
    if not (isinstance(value, (int, float)) and 0.0 <= value and high_ok):
        bracket = "]" if inclusive_high else ")"
        raise ValueError(f"{name} must be a probability in [0, 1{bracket}, got {value!r}")
    return float(value)


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
