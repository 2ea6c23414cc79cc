"""Held-out loss over one long token stream: every token scored once, with as much context as fits.

A language model is evaluated on a text it did not train on, read as one stream of ids
``x_0 … x_N``. The loss is the mean negative log-likelihood of every next token,

    L = −(1/N) Σ_{t=1..N} log p_θ(x_t | x_{t−c} … x_{t−1}),

where the context ``c`` a model can use is limited by its window of ``context`` tokens. Two ways
to read the stream through that window:

* ``stride = context`` (the default): cut the stream into windows that do not overlap. Cheap (each
  token is read once) but the first tokens of every window see little context, so the loss is a
  little pessimistic.
* ``stride < context``: slide the window ``stride`` tokens at a time and score only the last
  ``stride`` tokens of each window (all of them in the first), so every token after the first
  window sees at least ``context − stride`` tokens of history — the evaluation Hugging Face's
  perplexity guide describes. ``context / stride`` times the compute.

Either way every token ``x_1 … x_N`` is scored exactly once, the last partial window included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_int, check_rank, check_tensor


@torch.no_grad()
def token_losses(model: torch.nn.Module, ids: torch.Tensor, context: int, stride: int | None = None,
                 batch_size: int = 64) -> torch.Tensor:
    """Negative log-likelihood (nats) of each token ``ids[1:]``: a ``(len(ids) − 1,)`` float tensor.

    ``model(x)`` must map ids ``(B, T)`` to logits ``(B, T, V)``. The model is put in evaluation
    mode for the pass and given back in the mode it was in. Windows of equal length are batched
    ``batch_size`` at a time.
    """
    ids = check_tensor(ids, "ids")
    check_rank(ids, "ids", 1, "(N,): one stream of token ids")
    if ids.dtype not in (torch.int32, torch.int64) or len(ids) < 2:
        raise ValueError(f"ids must be an integer tensor of at least 2 token ids, got {ids.dtype} of length {len(ids)}")
    context = check_int(context, "context", low=1)
    stride = context if stride is None else check_int(stride, "stride", low=1, high=context,
                                                      hint="stride is how far the window moves; at most context")
    batch_size = check_int(batch_size, "batch_size", low=1)
    device = next(model.parameters()).device
    n = len(ids) - 1
    starts = [0]  # window starts: move by `stride` until a window reaches the last target
    while starts[-1] + context < n:
        starts.append(starts[-1] + stride)
    losses = torch.empty(n)
    was_training = model.training
    model.eval()
    try:
        # Each window [s, s + context) predicts targets s … s + context − 1; it scores those not
        # scored by the previous window: all of them in the first, the last `stride` in the others.
        by_length: dict[int, list[int]] = {}
        for s in starts:
            by_length.setdefault(min(context, n - s), []).append(s)
        for length, group in by_length.items():
            for i in range(0, len(group), batch_size):
                chunk = group[i : i + batch_size]
                x = torch.stack([ids[s : s + length] for s in chunk]).to(device)  # (b, length)
                y = torch.stack([ids[s + 1 : s + length + 1] for s in chunk]).to(device)  # (b, length)
                logits = model(x)  # (b, length, V)
                nll = F.cross_entropy(logits.transpose(1, 2).float(), y, reduction="none").cpu()  # (b, length)
                for row, s in zip(nll, chunk):
                    first = 0 if s == 0 else context - stride  # positions before it were scored already
                    losses[s + first : s + length] = row[first:]
    finally:
        model.train(was_training)
    return losses


def evaluate_stream(model: torch.nn.Module, ids: torch.Tensor, context: int, stride: int | None = None,
                    batch_size: int = 64) -> float:
    """Mean NLL per token (nats) of the stream ``ids``; see the module's docstring for ``stride``.

    ``exp`` of it is the perplexity; divided by ``ln 2``, bits per token.
    """
    return token_losses(model, ids, context, stride, batch_size).mean().item()
