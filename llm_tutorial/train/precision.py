"""Mixed precision: run the matrix multiplies in 16-bit floats where the hardware makes that faster.

Under ``torch.autocast`` the forward pass computes matrix products in bf16 or fp16 while keeping
sums that need range (softmax, norms, the loss) in fp32; the weights and the optimizer stay fp32.
bf16 has fp32's exponent range, so nothing overflows; fp16 does not, so its gradients are
multiplied by a large "loss scale" before the backward pass and divided again before the update
(``torch.amp.GradScaler``). On a CPU fp32 is the default: CPU bf16 is often no faster.
"""

from __future__ import annotations

import contextlib

import torch

from .._checks import check_choice
from .trainer_config import PRECISIONS


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device; ``None`` means plain fp32.

    ``"auto"``: bf16 on a GPU that computes in bf16 natively (Ampere or newer), fp16 on older
    GPUs such as the T4, fp32 elsewhere."""
    check_choice(precision, "precision", PRECISIONS)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError(f"precision 'fp16' needs a CUDA GPU, but the model is on {device}; "
                             "use 'bf16' or 'fp32' there")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
