"""Beam search with a length penalty, for the encoder–decoder Transformer.

Greedy decoding commits to the single most likely token at each step; a sentence whose first word
is slightly less likely but whose continuation is much more likely is never seen. Beam search
keeps the ``k`` best partial translations (the *beam*) at every step: each is extended by every
vocabulary token, and the ``k`` best of those ``k·V`` candidates survive, ranked by total
log-probability ``log p(y | x) = Σ_t log p(y_t | y_<t, x)``.

Longer hypotheses add more negative terms, so raw log-probabilities favour short outputs. GNMT's
length penalty (Wu et al., 2016) divides the score by

    lp(Y) = ((5 + |Y|) / 6)^α,      score(Y) = log p(Y | x) / lp(Y)

where ``|Y|`` counts the generated tokens, EOS included. α = 0 ranks by log-probability; larger α
favours longer hypotheses. (The simpler ``|Y|^α`` differs only by the constant 5 that damps the
effect on very short outputs.)

A hypothesis is complete when it ends with EOS or reaches ``max_new_tokens`` tokens. At each step
the ``2k`` best candidates are found; those ending with EOS that rank among the first ``k`` are
set aside as complete, and the ``k`` best of the others continue. The search of a source ends once
it holds ``k`` complete hypotheses (the rule of fairseq, and of Hugging Face's
``early_stopping=True``), or after ``max_new_tokens`` steps. With ``k = 1`` this is exactly greedy
decoding. All sources of a batch, and all ``k`` beams of each, run as one batch of
``B·k`` rows through the decoder; the KV cache is reordered (``KVCache.select_batch``) when the
surviving beams come from different parents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llm_tutorial._checks import check_dtype, check_positive_int, check_rank, check_token_ids


@dataclass
class BeamSearchResult:
    """The ``k`` best complete hypotheses of each source, best first.

    - ``tokens`` ``(B, k, L)``: generated ids (no BOS), EOS included where it was produced, then
      ``pad_id``;
    - ``lengths`` ``(B, k)``: tokens in each hypothesis (EOS included), ``|Y|``;
    - ``log_probs`` ``(B, k)``: ``log p(Y | x)``;
    - ``scores`` ``(B, k)``: the length-normalised scores ``log p(Y | x) / lp(Y)`` that rank them.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    log_probs: torch.Tensor
    scores: torch.Tensor
    eos_id: int

    def best(self) -> list[list[int]]:
        """Each source's best hypothesis as a list of ids, without its EOS."""
        best = []
        for row, length in zip(self.tokens[:, 0].tolist(), self.lengths[:, 0].tolist()):
            ids = row[:length]
            best.append(ids[:-1] if ids and ids[-1] == self.eos_id else ids)
        return best


def length_penalty(length: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """GNMT's length penalty ``lp(Y) = ((5 + |Y|) / 6)^α``."""
    return ((5 + length) / 6) ** alpha


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    src: torch.Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_new_tokens: int | None = None,
    alpha: float = 0.6,
    src_mask: torch.Tensor | None = None,
) -> BeamSearchResult:
    """Translate each source ``src`` ``(B, S)`` with a beam of ``beam_size`` hypotheses.

    ``model`` is an encoder–decoder with ``encode(src, src_mask)``, ``decode(tgt_in, memory,
    src_mask, cache=...)`` and ``new_cache(batch_size, max_len)``, such as
    :class:`~llm_tutorial.models.transformer.Transformer`. Decoding starts from ``bos_id`` and a
    hypothesis ends at ``eos_id``. ``max_new_tokens`` defaults to the model's ``max_len``;
    ``alpha`` is the length penalty's exponent (0: rank by log-probability); ``src_mask``
    ``(B, S)`` marks real source tokens (default: those that are not ``pad_id``). The model runs
    in evaluation mode; its training mode is restored afterwards.
    """
    vocab_size, max_len, pad_id = _check_model(model)
    check_rank(src, "src", 2, "(B, S) source token ids")
    check_token_ids(src, "src", model.config.src_vocab_size)
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < vocab_size:
            raise ValueError(f"{name} must be a target token id in [0, {vocab_size}), got {value!r}")
    k = check_positive_int(beam_size, "beam_size")
    steps = max_len if max_new_tokens is None else check_positive_int(max_new_tokens, "max_new_tokens")
    if steps > max_len:
        raise ValueError(f"max_new_tokens={steps} exceeds the model's max_len={max_len} target positions")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha < 0:
        raise ValueError(f"alpha (the length penalty exponent) must be a number ≥ 0, got {alpha!r}")
    if src_mask is None:
        src_mask = src != pad_id
    check_dtype(src_mask, "src_mask", torch.bool)
    was_training = model.training
    model.eval()
    try:
        return _search(model, src, src_mask, bos_id, eos_id, k, steps, float(alpha), vocab_size, pad_id)
    finally:
        model.train(was_training)


def _search(
    model: nn.Module, src: torch.Tensor, src_mask: torch.Tensor, bos_id: int, eos_id: int, k: int, steps: int,
    alpha: float, V: int, pad_id: int,
) -> BeamSearchResult:
    B, device = src.size(0), src.device
    memory = model.encode(src, src_mask).repeat_interleave(k, dim=0)  # (B·k, S, d_model)
    src_mask = src_mask.repeat_interleave(k, dim=0)  # (B·k, S)
    cache = model.new_cache(B * k, max_len=steps)
    minus_inf = torch.tensor(float("-inf"), device=device)
    # The k beams start identical (just BOS): only the first may be extended, or the beam would fill with copies.
    alive_log_probs = torch.full((B, k), float("-inf"), device=device)
    alive_log_probs[:, 0] = 0.0
    alive_tokens = torch.full((B, k, steps), pad_id, dtype=torch.long, device=device)
    done_tokens = alive_tokens.clone()
    done_log_probs = torch.full((B, k), float("-inf"), device=device)
    done_scores, done_lengths = done_log_probs.clone(), torch.zeros(B, k, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    last = torch.full((B * k, 1), bos_id, dtype=torch.long, device=device)
    first_row = torch.arange(B, device=device).unsqueeze(1) * k  # (B, 1): row of each source's first beam
    in_beam = torch.arange(min(2 * k, k * V), device=device) < k  # (2k,): the k best candidates of a step
    for t in range(steps):
        log_p = model.decode(last, memory, src_mask, cache=cache)[:, -1].log_softmax(dim=-1)  # (B·k, V)
        candidates = (alive_log_probs.unsqueeze(-1) + log_p.view(B, k, V)).view(B, k * V)
        # 2k candidates: at most k of them end with EOS, so k can always continue.
        cand_log_probs, flat = candidates.topk(min(2 * k, k * V), dim=-1)  # (B, 2k)
        parent, token = flat // V, flat % V  # (B, 2k) each
        cand_tokens = _take(alive_tokens, parent)  # (B, 2k, steps)
        cand_tokens[:, :, t] = token
        ends = (token == eos_id) | (t + 1 == steps)
        # Complete hypotheses among the k best candidates join the finished pool, which keeps the k best
        # by normalised score; an EOS ranked below the k best would not have been in a beam of k.
        joins = ends & in_beam & ~done.unsqueeze(1)
        cand_scores = torch.where(joins, cand_log_probs / length_penalty(t + 1, alpha), minus_inf)
        done_scores, pick = torch.cat([done_scores, cand_scores], dim=1).topk(k, dim=-1)  # (B, k)
        done_tokens = _take(torch.cat([done_tokens, cand_tokens], dim=1), pick)
        done_log_probs = _take(torch.cat([done_log_probs, cand_log_probs], dim=1), pick)
        done_lengths = _take(torch.cat([done_lengths, torch.full_like(token, t + 1)], dim=1), pick)
        done |= done_scores[:, -1] > float("-inf")  # k complete hypotheses: this source is finished
        if t + 1 == steps or bool(done.all()):
            break
        # the k best candidates that did not end continue, each from its parent's cache
        alive_log_probs, keep = torch.where(ends, minus_inf, cand_log_probs).topk(k, dim=-1)  # (B, k)
        alive_tokens = _take(cand_tokens, keep)
        cache.select_batch((first_row + parent.gather(1, keep)).view(-1))
        last = alive_tokens[:, :, t].reshape(B * k, 1)
    return BeamSearchResult(done_tokens, done_lengths, done_log_probs, done_scores, eos_id)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` ``(B, n)`` of each source's hypotheses ``x`` ``(B, N, ...)`` -> ``(B, n, ...)``."""
    index = index.view(*index.shape, *[1] * (x.ndim - 2)).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)


def _check_model(model: nn.Module) -> tuple[int, int, int]:
    """The target vocabulary size, the longest target and the padding id of an encoder–decoder."""
    config = getattr(model, "config", None)
    needed = ("src_vocab_size", "tgt_vocab_size", "max_len", "pad_id")
    if not all(callable(getattr(model, name, None)) for name in ("encode", "decode", "new_cache")) or not all(
            hasattr(config, name) for name in needed):
        raise TypeError(
            f"beam_search needs an encoder–decoder such as llm_tutorial.models.transformer.Transformer (encode, "
            f"decode, new_cache and config.{', config.'.join(needed)}), got {type(model).__name__}; for a "
            "decoder-only GPT use llm_tutorial.generate.generate"
        )
    return config.tgt_vocab_size, config.max_len, config.pad_id
