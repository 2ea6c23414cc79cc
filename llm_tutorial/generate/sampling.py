"""Decoding a decoder-only model: greedy or sampled, one token at a time, through the KV cache.

Autoregressive generation repeats one step: read the logits of the last position, reshape them
(:mod:`.processors`), choose a token, append it, and run the model on it:

    x_{t+1} ~ softmax(process(z_t))   or, greedy (temperature 0),   x_{t+1} = argmax_i z_{t,i}

The prompt goes through the model in one forward pass (the *prefill*), which fills the KV cache;
after that each step feeds only the newest token, whose query attends to the cached keys and
values: O(t) work per token instead of re-running all t tokens (``use_cache=False`` does that,
for comparison). Every buffer is allocated once, before the first step: the cache for
``prompt + max_new_tokens`` positions and the output ids ``(B, T_prompt + max_new_tokens)``.

A sequence never slides past the model's context: learned position embeddings exist only for
positions ``0 … context_length − 1``, so a sliding window would have to re-encode the whole
window at every step. ``T_prompt + max_new_tokens`` above the context length is an error that
names the limit; crop the prompt to keep within it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llm_tutorial._checks import check_generator, check_positive_int, check_token_ids
from llm_tutorial.generate.processors import apply_repetition_penalty, check_sampling_options, process_logits


@dataclass(frozen=True)
class _Request:
    """One checked generation request: the prompt ``(B, T)`` and how to choose tokens."""

    prompt: torch.Tensor
    single: bool  # the caller gave one sequence (T,) and gets one back
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    repetition_penalty: float
    stop_tokens: torch.Tensor | None
    pad_id: int | None
    generator: torch.Generator | None
    use_cache: bool


def generate(
    model: nn.Module, prompt_ids: torch.Tensor | list[int], max_new_tokens: int, **options: Any
) -> torch.Tensor:
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens; returns prompt and continuation.

    ``prompt_ids``: one sequence ``(T,)`` (a tensor or a list of ints) or a batch of equal-length
    prompts ``(B, T)``; the result has the same number of dimensions, ``(B, T + n)``.

    Options (all keyword-only):

    - ``temperature`` (default 1.0): ``0`` is greedy decoding (the argmax, no randomness);
      otherwise tokens are sampled from the processed distribution. ``top_k`` (None),
      ``top_p`` (None) and ``repetition_penalty`` (1.0) reshape it as
      :func:`~llm_tutorial.generate.processors.process_logits` describes.
    - ``stop_tokens`` (None): an id or ids; a row is finished once it produces one of them (the
      stop token is kept). Finished rows are frozen: their later positions hold ``pad_id``
      (default: the stop token that ended the row). Generation ends when every row has finished,
      so ``n`` may be below ``max_new_tokens``.
    - ``generator`` (None): a ``torch.Generator`` on the model's device, for reproducible samples
      independent of the global random state.
    - ``use_cache`` (True): ``False`` re-runs the whole sequence at every step (same tokens,
      slower).

    The model runs in evaluation mode (dropout off) and under ``torch.inference_mode``; its
    training mode is restored afterwards.
    """
    request = _prepare(model, prompt_ids, max_new_tokens, **options)
    out = _output_buffer(request)
    length = request.prompt.size(1)
    for length in _decode(model, request, out):
        pass
    return out[0, :length] if request.single else out[:, :length]


def stream(
    model: nn.Module, prompt_ids: torch.Tensor | list[int], max_new_tokens: int, **options: Any
) -> Iterator[int | torch.Tensor]:
    """Like :func:`generate` (same options), but yields each new token as soon as it is chosen:
    an ``int`` for a single prompt ``(T,)``, a ``(B,)`` tensor for a batch. Print as they come::

        for token in stream(model, tokenizer.encode("ROMEO:"), 200, temperature=0.8):
            print(tokenizer.decode([token]), end="", flush=True)

    The arguments are checked at the call, before the first token is asked for."""
    request = _prepare(model, prompt_ids, max_new_tokens, **options)
    return _stream_tokens(model, request, _output_buffer(request))


def _stream_tokens(model: nn.Module, request: _Request, out: torch.Tensor) -> Iterator[int | torch.Tensor]:
    for length in _decode(model, request, out):
        token = out[:, length - 1]  # (B,)
        yield int(token[0]) if request.single else token


def _output_buffer(request: _Request) -> torch.Tensor:
    """The ids of prompt and continuation, ``(B, T_prompt + max_new_tokens)``, allocated once."""
    B, T = request.prompt.shape
    out = torch.empty(B, T + request.max_new_tokens, dtype=torch.long, device=request.prompt.device)
    out[:, :T] = request.prompt
    return out


@torch.inference_mode()
def _decode(model: nn.Module, request: _Request, out: torch.Tensor) -> Iterator[int]:
    """Fill ``out`` after the prompt, one token per step; yield the filled length after each."""
    B, start = request.prompt.shape
    end = start + request.max_new_tokens
    was_training, checked = model.training, getattr(model, "check_token_range", None)
    model.eval()
    if checked is not None:
        model.check_token_range = False  # the prompt was checked once; new ids come from the vocabulary
    try:
        cache = model.new_cache(B, max_len=end) if request.use_cache else None
        logits = _last_logits(model, request.prompt, cache)  # (B, V): the prefill
        finished = torch.zeros(B, dtype=torch.bool, device=out.device)
        fill = torch.full((B,), -1 if request.pad_id is None else request.pad_id, device=out.device)
        for t in range(start, end):
            token = _choose(logits, out[:, :t], request)  # (B,)
            if request.stop_tokens is not None:
                token = torch.where(finished, fill, token)
                stopping = ~finished & torch.isin(token, request.stop_tokens)
                if request.pad_id is None:
                    fill = torch.where(stopping, token, fill)
                finished |= stopping
            out[:, t] = token
            yield t + 1
            if t + 1 == end or (request.stop_tokens is not None and bool(finished.all())):
                return
            if cache is not None:
                logits = _last_logits(model, out.narrow(1, t, 1), cache)  # (B, 1): one new token through the cache
            else:
                logits = _last_logits(model, out[:, : t + 1], None)  # the whole sequence again
    finally:
        model.train(was_training)
        if checked is not None:
            model.check_token_range = checked


def _last_logits(model: nn.Module, ids: torch.Tensor, cache: Any) -> torch.Tensor:
    """Next-token logits ``(B, V)`` of the last position only: the output layer, ``d_model × V``
    per position (38M multiply-adds for GPT-2), runs on one position instead of all ``T``."""
    hidden = model.hidden_states(ids, cache=cache)[:, -1]  # (B, d_model)
    return model.lm_head(hidden)


def _choose(logits: torch.Tensor, previous_ids: torch.Tensor, request: _Request) -> torch.Tensor:
    """The next token of each row ``(B,)`` from the last position's logits ``(B, V)``."""
    if request.temperature == 0:
        if request.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, previous_ids, request.repetition_penalty)
        return logits.argmax(dim=-1)
    logits = process_logits(logits, previous_ids, temperature=request.temperature, top_k=request.top_k,
                            top_p=request.top_p, repetition_penalty=request.repetition_penalty)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=request.generator).squeeze(-1)


def _prepare(
    model: nn.Module,
    prompt_ids: torch.Tensor | list[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    stop_tokens: Iterable[int] | int | None = None,
    pad_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> _Request:
    """Check every argument once, before any work, and return them as a :class:`_Request`."""
    context_length, vocab_size = _decoder_limits(model)
    device = next(model.parameters()).device
    if isinstance(prompt_ids, list):
        if not prompt_ids:
            raise ValueError("prompt_ids is empty; give at least one token (e.g. the id of a newline)")
        bad = next((i for i in prompt_ids if not isinstance(i, int) or isinstance(i, bool)), None)
        if bad is not None:  # torch.tensor([1.5], dtype=torch.long) would silently make it 1
            raise TypeError(f"prompt_ids must be a list of int token ids, got {bad!r} ({type(bad).__name__}); "
                            "encode text with the tokenizer first")
        prompt_ids = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    prompt = prompt_ids
    if not isinstance(prompt, torch.Tensor) or prompt.ndim not in (1, 2):
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"prompt_ids must be a list of ints, a (T,) tensor or a (B, T) batch of equal-length "
                         f"prompts, got {shape}")
    if prompt.numel() == 0:
        raise ValueError(f"prompt_ids must hold at least one token per sequence, got shape {tuple(prompt.shape)}")
    check_token_ids(prompt, "prompt_ids", vocab_size)
    single = prompt.ndim == 1
    prompt = prompt.to(device=device, dtype=torch.long).reshape(-1, prompt.shape[-1])  # (B, T)
    check_positive_int(max_new_tokens, "max_new_tokens")
    if prompt.size(1) + max_new_tokens > context_length:
        raise ValueError(
            f"a prompt of {prompt.size(1)} tokens plus max_new_tokens={max_new_tokens} exceeds the model's context "
            f"length {context_length}; keep prompt + new tokens ≤ {context_length} (crop the prompt to its last "
            f"{max(context_length - max_new_tokens, 1)} tokens, or ask for fewer new tokens)"
        )
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a finite number ≥ 0 (0 = greedy), got {temperature!r}; a huge "
                         "temperature samples uniformly: for that, use a large finite value")
    stops = _stop_tensor(stop_tokens, vocab_size, device)
    if pad_id is not None:
        if stops is None:
            raise ValueError("pad_id fills the rows that met a stop token; give stop_tokens too")
        if not isinstance(pad_id, int) or isinstance(pad_id, bool) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be a token id in [0, {vocab_size}), got {pad_id!r}")
    check_generator(generator)
    if use_cache and not callable(getattr(model, "new_cache", None)):
        raise TypeError(f"use_cache=True needs model.new_cache(batch_size, max_len); {type(model).__name__} has "
                        "none (pass use_cache=False)")
    check_sampling_options(top_k, top_p, repetition_penalty)
    return _Request(prompt, single, max_new_tokens, float(temperature), top_k, top_p, float(repetition_penalty),
                    stops, pad_id, generator, bool(use_cache))


def _decoder_limits(model: nn.Module) -> tuple[int, int]:
    """The context length and vocabulary size of a decoder-only model such as :class:`GPT`."""
    config = getattr(model, "config", None)
    if not isinstance(model, nn.Module) or not all(hasattr(model, name) for name in ("hidden_states", "lm_head")) \
            or not all(hasattr(config, name) for name in ("context_length", "vocab_size")):
        raise TypeError(
            f"generate() needs a decoder-only model such as GPT (hidden_states(idx, cache=...), lm_head, "
            f"config.context_length and config.vocab_size), got {type(model).__name__}; for the encoder–decoder "
            "Transformer use llm_tutorial.generate.beam_search"
        )
    return config.context_length, config.vocab_size


def _stop_tensor(stop_tokens: Iterable[int] | int | None, vocab_size: int, device: torch.device) -> torch.Tensor | None:
    """The stop tokens as a 1-D tensor on ``device`` (``None`` when there are none)."""
    if stop_tokens is None:
        return None
    ids = [stop_tokens] if isinstance(stop_tokens, int) else list(stop_tokens)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids):
        raise ValueError(f"stop_tokens must be token ids in [0, {vocab_size}) (an int or a non-empty list), "
                         f"got {stop_tokens!r}")
    return torch.tensor(ids, dtype=torch.long, device=device)
