"""AdamW with weight decay on the weight matrices only.

Weight decay pulls parameters towards zero, ``θ ← θ − η λ θ``, decoupled from the gradient step
(that decoupling is the "W" in AdamW). Decaying a weight matrix limits how large the products
``x W`` can grow; decaying a bias or a norm's gain only shifts or rescales activations and helps
nothing, so, as in nanoGPT, every parameter with two or more dimensions (linear weights *and*
embedding tables) is decayed and every one-dimensional parameter (biases, LayerNorm/RMSNorm
gains) is not.
"""

from __future__ import annotations

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW parameter groups: tensors with ``ndim ≥ 2`` decayed, the others not.

    Shared (tied) parameters appear once; frozen ones (``requires_grad=False``) not at all.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def build_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`, with the fastest update the device offers.

    The fused implementation (one kernel for all tensors) runs on CUDA and, in recent PyTorch, on
    the CPU; elsewhere the ``foreach`` path still updates all tensors in a few batched operations
    instead of a Python loop over parameters.
    """
    groups = parameter_groups(model, weight_decay)
    device_type = next(model.parameters()).device.type
    fused = device_type in ("cuda", "cpu") and all(p.is_floating_point() for g in groups for p in g["params"])
    if fused:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def build_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:  # config: TrainConfig
    """The optimizer ``config.optimizer`` names: :func:`build_adamw`, or Muon with AdamW for the
    embeddings, head and vectors (:func:`llm_tutorial.train.muon.build_muon`)."""
    if config.optimizer == "muon":
        from .muon import build_muon

        return build_muon(model, config.lr, config.weight_decay, config.betas, muon_lr_scale=config.muon_lr_scale,
                          ns_steps=config.muon_ns_steps)
    return build_adamw(model, config.lr, config.weight_decay, config.betas)
