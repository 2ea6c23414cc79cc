"""Turning one long stream of token ids into training batches.

A language model trains on windows of ``T`` consecutive tokens. For next-token prediction the
target window is the input window shifted by one: ``y[t] = x[t + 1]``.
"""

from __future__ import annotations

import torch

from .._checks import check_positive_int, check_rank, check_token_ids


def train_val_split(ids: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D stream into its first ``1 - val_fraction`` (train) and the rest (validation).

    The split is contiguous, not shuffled: shuffled windows of one text would put near-copies of
    validation text into training and flatter the validation loss.
    """
    check_rank(ids, "ids", 1, "(N,)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    cut = int(len(ids) * (1.0 - val_fraction))
    if cut < 2 or len(ids) - cut < 2:
        raise ValueError(f"{len(ids)} tokens are too few to split with val_fraction={val_fraction}")
    return ids[:cut], ids[cut:]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    context_length: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows: inputs ``x`` and next-token targets ``y``, each (B, T).

    Window ``b`` starts at a uniformly random offset ``i_b`` in ``[0, N - T - 1]``:
    ``x[b] = data[i_b : i_b + T]`` and ``y[b] = data[i_b + 1 : i_b + T + 1]``.
    """
    check_rank(data, "data", 1, "(N,)")
    if data.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"data must hold integer token ids (torch.long), got {str(data.dtype).replace('torch.', '')}; "
                        "a float tensor would be indexed as ids and break the embedding (use encode_corpus)")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(context_length, "context_length")
    if len(data) < context_length + 1:
        raise ValueError(
            f"data holds {len(data)} tokens, too few for one window of context_length={context_length} "
            f"plus its target; use a shorter context or more data"
        )
    starts = torch.randint(0, len(data) - context_length, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(context_length)  # (T,)
    index = starts[:, None] + offsets[None, :]  # (B, T)
    x, y = data[index], data[index + 1]
    if device is not None:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x, y


def encode_corpus(ids: list[int], vocab_size: int) -> torch.Tensor:
    """A list of token ids as a 1-D ``torch.long`` tensor, checked against the vocabulary."""
    tensor = torch.tensor(ids, dtype=torch.long)
    check_token_ids(tensor, "ids", vocab_size)
    return tensor


def pad_sequences(sequences: list[list[int]], value: int) -> torch.Tensor:
    """Lists of ids of different lengths -> one (B, T_max) tensor, each row filled with ``value`` after its ids.

    Batches of sentences (translation pairs, questions) differ in length; the model reads one
    rectangle, and a mask (``ids != value`` for a padding id) tells it which positions are real.
    """
    if not isinstance(sequences, (list, tuple)) or len(sequences) == 0:
        raise ValueError("pad_sequences needs a non-empty list of id lists")
    if any(not isinstance(ids, (list, tuple)) or len(ids) == 0 for ids in sequences):
        raise ValueError("pad_sequences: every sequence must be a non-empty list of ids")
    out = torch.full((len(sequences), max(map(len, sequences))), value, dtype=torch.long)  # (B, T_max)
    for row, ids in enumerate(sequences):
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
