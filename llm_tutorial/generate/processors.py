"""Logits processors: how the next-token distribution is reshaped before a token is chosen.

A language model gives scores (logits) ``z`` over the vocabulary; the next token is drawn from
``softmax(z)``. Each function here rewrites the logits ``(B, V)`` of one step and returns new
logits, leaving its input untouched. They compose, in the order :func:`process_logits` applies
them (the order of Hugging Face's ``generate``):

1. **repetition penalty** (Keskar et al., 2019, CTRL): tokens already in the sequence lose
   likelihood, ``z_i / θ`` if ``z_i > 0`` else ``z_i · θ``;
2. **temperature** (Ackley et al., 1985): ``z / T``; T < 1 sharpens the distribution, T > 1
   flattens it, T → 0 tends to the argmax (greedy decoding, which ``generate`` calls
   ``temperature=0``);
3. **top-k** (Fan et al., 2018): only the k highest logits survive;
4. **top-p / nucleus** (Holtzman et al., 2020): only the smallest set of most likely tokens whose
   probabilities add up to at least p survives.

A removed token gets the logit ``-inf``: probability exactly 0 after the softmax.
"""

from __future__ import annotations

import torch

from llm_tutorial._checks import (
    check_floating,
    check_min_rank,
    check_positive_int,
    check_positive_number,
    check_probability,
)


def _check_logits(logits: torch.Tensor) -> None:
    check_min_rank(logits, "logits", 1, "(..., V)")
    check_floating(logits, "logits")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``z / T`` for ``T > 0``: ``softmax(z / T)`` is sharper than ``softmax(z)`` when T < 1."""
    _check_logits(logits)
    return logits / check_positive_number(temperature, "temperature")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (and any tied with the k-th); the rest become -inf."""
    _check_logits(logits)
    check_positive_int(k, "top_k")
    k = min(k, logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose total probability is
    at least ``p``; the rest become -inf. ``p = 1`` keeps every token.

    With probabilities sorted in decreasing order, π_(1) ≥ π_(2) ≥ …, token (j) is kept when the
    mass before it, Σ_{i<j} π_(i), is still below p. The most likely token is always kept.
    """
    _check_logits(logits)
    _check_top_p(p)
    if p == 1:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V) each
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V): Σ_{i<j} π_(i)
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def _check_top_p(p: float) -> None:
    check_probability(p, "top_p")
    if p == 0:
        raise ValueError("top_p must be > 0 (the nucleus would be empty); use top_p=1.0 to keep every token")


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: for every token already in ``previous_ids`` ``(B, T)``, divide
    its logit by ``penalty`` if positive, multiply it if negative, so it always becomes less
    likely (for ``penalty > 1``; ``penalty = 1`` changes nothing). ``logits`` are ``(B, V)``."""
    _check_logits(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have 2 dimensions (B, V), got shape {tuple(logits.shape)}")
    check_positive_number(penalty, "repetition_penalty")
    check_min_rank(previous_ids, "previous_ids", 2, "(B, T)")
    if previous_ids.ndim != 2 or previous_ids.size(0) != logits.size(0):
        raise ValueError(f"previous_ids must have shape (B, T) with B = {logits.size(0)} (the logits' batch size), "
                         f"got {tuple(previous_ids.shape)}")
    seen = logits.gather(-1, previous_ids)  # (B, T): the logits of the tokens already present
    penalised = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, previous_ids, penalised)


def check_sampling_options(top_k: int | None, top_p: float | None, repetition_penalty: float) -> None:
    """Check the options of :func:`process_logits` before any logits exist, so that a bad value
    fails at the call that set it. (The temperature is left to the caller: ``generate`` reads
    ``temperature=0`` as greedy decoding.)"""
    if top_k is not None:
        check_positive_int(top_k, "top_k")
    if top_p is not None:
        _check_top_p(top_p)
    check_positive_number(repetition_penalty, "repetition_penalty")


def process_logits(
    logits: torch.Tensor,
    previous_ids: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """All processors in order: repetition penalty, temperature, top-k, top-p. Each one is
    skipped when it is off (``repetition_penalty=1``, ``temperature=1``, ``top_k=None``,
    ``top_p=None``); ``previous_ids`` ``(B, T)`` is needed only for the repetition penalty."""
    if repetition_penalty != 1.0:
        if previous_ids is None:
            raise ValueError("repetition_penalty needs previous_ids, the tokens already in each sequence")
        logits = apply_repetition_penalty(logits, previous_ids, repetition_penalty)
    if temperature != 1.0:
        logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits
