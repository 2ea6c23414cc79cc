"""T5's span corruption (Raffel et al., 2020, §3.1.4 and §3.3): drop spans, keep one sentinel for each.

The encoder reads the text with a few spans dropped, each replaced by one *sentinel* token; the
decoder writes the dropped spans, each after its sentinel, and a final sentinel to end:

    original   Thank you for inviting me to your party last week .
    input      Thank you <X> me to your party <Y> week .
    target     <X> for inviting <Y> last <Z>

Which tokens are dropped follows T5's procedure (its ``random_spans_noise_mask``) for a sequence of
``L`` tokens, a noise density ``r`` (15%) and a mean span length ``μ`` (3):

1. ``N = round(L · r)`` noise tokens (at least 1, at most L − 1), in ``S = round(N / μ)`` spans (at least 1,
   and never more spans than there are noise or kept tokens);
2. the N noise tokens are cut into S non-empty spans at random, and the L − N others likewise;
   a random cut of n items into S non-empty parts picks S − 1 of the n − 1 gaps uniformly;
3. the spans alternate, non-noise first: ``keep_1 noise_1 keep_2 noise_2 … keep_S noise_S``.

Because the numbers of tokens and spans depend on L only, every window of one length gives an
input of ``L − N + S`` and a target of ``N + S + 1`` tokens: batches need no padding. The input is
shorter than the text, and the target much shorter than the text: T5 chose this objective partly
because it is cheap (§3.3.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from .._checks import check_dtype, check_generator, check_positive_number, check_rank, check_tensor

INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


class SpanCorruption(NamedTuple):
    """One span-corrupted example (or a batch of them, all rows of one length)."""

    inputs: torch.Tensor  # (..., L − N + S) the text, each dropped span replaced by its sentinel
    targets: torch.Tensor  # (..., N + S + 1) sentinel_1 span_1 … sentinel_S span_S sentinel_{S+1}
    noise_mask: torch.Tensor  # (..., L) bool, True at the dropped tokens


def span_counts(length: int, noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """``(N, S)``: how many tokens T5 drops from ``length`` tokens, and in how many spans."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise ValueError(f"span corruption needs a sequence of at least 2 tokens, got length {length!r}")
    check_positive_number(noise_density, "noise_density")
    if noise_density >= 1:
        raise ValueError(f"noise_density must be below 1 (some tokens must stay), got {noise_density}")
    check_positive_number(mean_span_length, "mean_span_length")
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = min(max(round(n_noise / mean_span_length), 1), n_noise, length - n_noise)  # each span non-empty
    return n_noise, n_spans


def _random_segmentation(n_items: int, n_segments: int, generator: torch.Generator | None) -> torch.Tensor:
    """Lengths ``(n_segments,)`` of a uniformly random cut of ``n_items`` items into non-empty segments."""
    gaps = torch.randperm(n_items - 1, generator=generator)[: n_segments - 1].sort().values + 1  # cut after these
    edges = torch.cat([torch.tensor([0]), gaps, torch.tensor([n_items])])
    return edges.diff()  # (n_segments,), each ≥ 1, summing to n_items


def random_spans_noise_mask(
    length: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """T5's noise mask ``(length,)``, bool: S noise spans of N tokens in all, interleaved with S kept spans."""
    n_noise, n_spans = span_counts(length, noise_density, mean_span_length)
    check_generator(generator)
    noise_lengths = _random_segmentation(n_noise, n_spans, generator)  # (S,)
    keep_lengths = _random_segmentation(length - n_noise, n_spans, generator)  # (S,)
    lengths = torch.stack([keep_lengths, noise_lengths], dim=1).flatten()  # keep_1 noise_1 keep_2 noise_2 …
    is_noise = torch.tensor([False, True]).repeat(n_spans)  # (2S,)
    return is_noise.repeat_interleave(lengths)  # (length,)


def corrupt_with_mask(ids: torch.Tensor, noise_mask: torch.Tensor, sentinel_ids: Sequence[int]) -> SpanCorruption:
    """Apply a given noise mask to ``ids`` ``(L,)``: each maximal run of True becomes one sentinel in
    the input, and the target lists ``sentinel_i run_i`` for every run, then one more sentinel."""
    check_tensor(ids, "ids")
    check_rank(ids, "ids", 1, "(L,) one sequence")
    check_dtype(noise_mask, "noise_mask", torch.bool)
    if noise_mask.shape != ids.shape:
        raise ValueError(f"noise_mask must have the shape of ids {tuple(ids.shape)}, got {tuple(noise_mask.shape)}")
    starts = noise_mask & ~torch.cat([noise_mask.new_zeros(1), noise_mask[:-1]])  # (L,) first token of each span
    n_spans = int(starts.sum())
    sentinels = torch.tensor(_sentinels(sentinel_ids, n_spans + 1, ids), dtype=torch.long)  # (S + 1,)
    span_index = (starts.cumsum(0) - 1).clamp(min=0)  # (L,) which span a noise token belongs to
    tokens, nothing = ids.long(), torch.full_like(ids, -1, dtype=torch.long)
    sentinel_here = torch.where(starts, sentinels[span_index], nothing)  # (L,) a sentinel before each span
    # Each position emits up to two tokens, (sentinel if a span starts here, the token if kept/dropped);
    # flattening the (L, 2) pairs and dropping the -1s writes the sequences in one pass.
    inputs = torch.stack([sentinel_here, torch.where(noise_mask, nothing, tokens)], dim=1).flatten()  # (2L,)
    targets = torch.stack([sentinel_here, torch.where(noise_mask, tokens, nothing)], dim=1).flatten()  # (2L,)
    inputs, targets = inputs[inputs >= 0], torch.cat([targets[targets >= 0], sentinels[-1:]])  # final sentinel
    return SpanCorruption(inputs.to(ids.dtype), targets.to(ids.dtype), noise_mask)


def span_corrupt(
    ids: torch.Tensor,
    *,
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> SpanCorruption:
    """T5's span corruption of ``ids`` ``(L,)`` or a batch ``(B, L)`` (a fresh mask per row).

    ``sentinel_ids`` are the sentinel tokens in order (T5's ``<extra_id_0>, <extra_id_1>, …``): at least
    ``S + 1`` of them, distinct, and none of them may occur in ``ids``.
    """
    check_tensor(ids, "ids")
    check_rank(ids, "ids", (1, 2), "(L,) or (B, L)")
    check_dtype(ids, "ids", INTEGER_DTYPES)
    if ids.ndim == 2:
        rows = [span_corrupt(row, sentinel_ids=sentinel_ids, noise_density=noise_density,
                             mean_span_length=mean_span_length, generator=generator) for row in ids]
        return SpanCorruption(*(torch.stack(parts) for parts in zip(*rows)))
    mask = random_spans_noise_mask(len(ids), noise_density, mean_span_length, generator=generator)
    return corrupt_with_mask(ids, mask, sentinel_ids)


def reconstruct(inputs: torch.Tensor, targets: torch.Tensor, sentinel_ids: Sequence[int]) -> torch.Tensor:
    """The original sequence ``(L,)`` from one example's ``inputs`` and ``targets``: each sentinel of the
    input is replaced by the tokens that follow the same sentinel in the target (up to the next one)."""
    check_rank(inputs, "inputs", 1, "(L_in,)")
    check_rank(targets, "targets", 1, "(L_tgt,)")
    sentinel_set = {int(s) for s in sentinel_ids}
    spans, current = {}, None
    for token in targets.tolist():
        if token in sentinel_set:
            current = token
            spans[current] = []
        elif current is None:
            raise ValueError("targets must start with a sentinel")
        else:
            spans[current].append(token)
    out = []
    for token in inputs.tolist():
        if token in sentinel_set:
            if token not in spans:
                raise ValueError(f"sentinel {token} of the input does not occur in the targets")
            out.extend(spans[token])
        else:
            out.append(token)
    return torch.tensor(out, dtype=inputs.dtype)


def _sentinels(sentinel_ids: Sequence[int], needed: int, ids: torch.Tensor) -> list[int]:
    if isinstance(sentinel_ids, torch.Tensor):
        sentinel_ids = sentinel_ids.tolist()
    if isinstance(sentinel_ids, (str, bytes)) or not isinstance(sentinel_ids, Sequence):
        raise TypeError(f"sentinel_ids must be a sequence of token ids, got {type(sentinel_ids).__name__}")
    sentinels = [int(s) for s in sentinel_ids]
    if len(set(sentinels)) != len(sentinels):
        raise ValueError(f"sentinel_ids must be distinct, got {sentinels}")
    if len(sentinels) < needed:
        raise ValueError(f"this example has {needed - 1} spans and needs {needed} sentinels (one per span and a "
                         f"final one), but only {len(sentinels)} sentinel_ids were given")
    if torch.isin(ids, torch.tensor(sentinels, dtype=ids.dtype)).any():
        raise ValueError("ids contain a sentinel id: sentinels must be tokens that never occur in the text")
    return sentinels[:needed]
