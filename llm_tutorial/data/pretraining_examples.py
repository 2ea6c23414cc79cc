"""Training examples for the pre-training objectives of chapters 2 and 3: MLM, NSP, CLM, RTD and PLM.

A pre-training objective is a way of turning raw text into questions whose answers the text
already holds, so no human labels are needed:

- **CLM** (causal LM, GPT): "what comes next?" Inputs are tokens ``x_1..x_{T-1}``, targets
  ``x_2..x_T``.                                                              :func:`causal_lm_example`
- **MLM** (masked LM, BERT): "what was hidden here?" 15% of the tokens are selected; of those
  80% become [MASK], 10% a random token, 10% stay as they are.              :func:`mask_tokens`
- **NSP** (next-sentence prediction, BERT): "does segment B follow segment A?" Half the pairs
  are true neighbours, half are random.        :func:`sample_nsp_pairs`, :func:`pack_nsp_pair`, :func:`nsp_batch`
- **RTD** (replaced-token detection, ELECTRA): a small generator fills the masked positions by
  sampling; the discriminator says, for every token, whether it was replaced. :func:`replace_tokens`
- **PLM** (permutation LM, XLNet): "what comes next in this random order of the positions?" The
  text is unchanged; a random order per window and its last 1/K as targets.  :func:`permutation_lm_example`

T5's span corruption has its own module, :mod:`llm_tutorial.data.span_corruption`.

Every random choice draws from an optional ``torch.Generator``: the same seed gives the same
examples, whatever else the program draws. Labels that no loss should score are
``llm_tutorial.losses.IGNORE_INDEX``; the losses themselves live in ``llm_tutorial.losses``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch

from .._checks import (
    check_dtype,
    check_floating,
    check_generator,
    check_labels,
    check_min_rank,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_tensor,
    check_token_id,
    check_token_ids,
)
from ..losses import IGNORE_INDEX

INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)

MASK_FRACTION = 0.8
"""Of the positions selected by MLM, the share replaced by [MASK] (BERT: 80%)."""
RANDOM_FRACTION = 0.1
"""Of the positions selected by MLM, the share replaced by a random token (BERT: 10%); the remaining
10% keep their token, so the model cannot learn that only [MASK] positions matter."""
NSP_NEXT_PROBABILITY = 0.5
"""The share of NSP pairs whose second segment really is the next one."""


# ----------------------------------------------------------------------------------------------
# CLM: shifted targets


def causal_lm_example(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of a causal LM: ``(ids[..., :-1], ids[..., 1:])``.

    Position ``t`` of the inputs sees ``x_1..x_t`` and its target is ``x_{t+1}``, so one
    sequence of T tokens gives T - 1 predictions at once.
    """
    check_min_rank(ids, "ids", 1, "(..., T)")
    check_dtype(ids, "ids", INTEGER_DTYPES)
    if ids.shape[-1] < 2:
        raise ValueError(
            f"a causal LM example needs at least 2 tokens (one input, one target), got shape {tuple(ids.shape)}"
        )
    return ids[..., :-1], ids[..., 1:]  # (..., T-1), (..., T-1)


# ----------------------------------------------------------------------------------------------
# MLM: 15% selected, 80/10/10


def _special_id_tensor(special_ids: Iterable[int], mask_id: int, vocab_size: int, device: torch.device) -> torch.Tensor:
    """The special ids as a tensor, [MASK] included, each checked against the vocabulary."""
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Iterable):
        raise TypeError(f"special_ids must be an iterable of token ids, got {type(special_ids).__name__}")
    ids = {check_token_id(i, "each of special_ids", vocab_size) for i in special_ids} | {mask_id}
    if len(ids) >= vocab_size:
        raise ValueError(
            f"all {vocab_size} ids of the vocabulary are special: no token is left to mask or to draw at random"
        )
    return torch.tensor(sorted(ids), dtype=torch.long, device=device)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption: returns ``(masked_ids, labels)``, both shaped like ``input_ids``.

    1. Each position holding a non-special token is *selected* independently with probability
       ``mask_prob`` (15%). Special tokens ([CLS], [SEP], padding, [MASK] itself) never are.
    2. A selected position becomes [MASK] with probability 0.8, a random non-special token with
       probability 0.1, and keeps its token with probability 0.1.
    3. ``labels`` hold the original id at selected positions and ``IGNORE_INDEX`` elsewhere,
       so the loss scores exactly the selected positions.

    The random 10% and the unchanged 10% matter at fine-tuning time, when no [MASK] appears: the
    model must build a good representation of *every* token, not only of [MASK] positions.
    Random draws take ``generator`` (which must live on the device of ``input_ids``).
    """
    check_positive_int(vocab_size, "vocab_size")
    check_token_ids(input_ids, "input_ids", vocab_size)
    check_token_id(mask_id, "mask_id", vocab_size)
    special = _special_id_tensor(special_ids, mask_id, vocab_size, input_ids.device)
    check_probability(mask_prob, "mask_prob")
    check_generator(generator)

    device = input_ids.device
    candidates = ~torch.isin(input_ids, special)  # (...) True where a token may be selected
    selected = candidates & (torch.rand(input_ids.shape, generator=generator, device=device) < mask_prob)
    action = torch.rand(input_ids.shape, generator=generator, device=device)  # which of 80/10/10
    to_mask = selected & (action < MASK_FRACTION)
    to_random = selected & (action >= MASK_FRACTION) & (action < MASK_FRACTION + RANDOM_FRACTION)

    ordinary = torch.ones(vocab_size, dtype=torch.bool, device=device)
    ordinary[special] = False
    ordinary_ids = ordinary.nonzero().squeeze(-1)  # (V - number of specials,)
    random_ids = ordinary_ids[
        torch.randint(len(ordinary_ids), input_ids.shape, generator=generator, device=device)
    ].to(input_ids.dtype)  # (...)

    masked_ids = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    masked_ids = torch.where(to_random, random_ids, masked_ids)
    labels = torch.where(selected, input_ids.long(), torch.full_like(input_ids, IGNORE_INDEX, dtype=torch.long))
    return masked_ids, labels


# ----------------------------------------------------------------------------------------------
# NSP: half true next segments, half random ones


class NspPair(NamedTuple):
    """Two segments and whether the second really follows the first in the corpus."""

    first: Sequence[int]
    second: Sequence[int]
    is_next: int  # 1: ``second`` is the true next segment; 0: a random one


class NspBatch(NamedTuple):
    """A padded batch of packed NSP pairs, ready for ``Bert``."""

    input_ids: torch.Tensor  # (B, T) [CLS] A [SEP] B [SEP] [PAD]...
    token_type_ids: torch.Tensor  # (B, T) 0 for [CLS] A [SEP], 1 for B [SEP], 0 for padding
    attention_mask: torch.Tensor  # (B, T) bool, True at real tokens
    is_next: torch.Tensor  # (B,) long


def sample_nsp_pairs(
    segments: Sequence[Sequence[int]],
    *,
    generator: torch.Generator | None = None,
) -> list[NspPair]:
    """One NSP pair for each segment that has a successor, i.e. ``len(segments) - 1`` pairs.

    Pair ``i`` starts with ``A = segments[i]``. With probability 1/2, ``B = segments[i + 1]``
    (``is_next = 1``); otherwise ``B = segments[j]`` for ``j`` uniform over every index except
    ``i + 1`` (``is_next = 0``). Segments are lists of token ids, e.g. the encoded lines of a text
    with blank lines dropped.
    """
    if isinstance(segments, (str, bytes)) or not isinstance(segments, Sequence):
        raise TypeError(f"segments must be a sequence of token-id lists, got {type(segments).__name__}")
    if len(segments) < 2:
        raise ValueError(f"NSP needs at least 2 segments (one pair of neighbours), got {len(segments)}")
    check_generator(generator)
    num_pairs = len(segments) - 1
    coins = torch.rand(num_pairs, generator=generator)  # (P,)
    others = torch.randint(len(segments) - 1, (num_pairs,), generator=generator)  # (P,) index among the n-1 non-next
    pairs = []
    for i in range(num_pairs):
        if coins[i] < NSP_NEXT_PROBABILITY:
            pairs.append(NspPair(segments[i], segments[i + 1], 1))
        else:
            j = int(others[i])
            j = j if j < i + 1 else j + 1  # skip the true next index i + 1
            pairs.append(NspPair(segments[i], segments[j], 0))
    return pairs


def pack_nsp_pair(
    first: Sequence[int],
    second: Sequence[int],
    *,
    cls_id: int,
    sep_id: int,
    max_length: int,
) -> tuple[list[int], list[int]]:
    """``[CLS] A [SEP] B [SEP]`` and its token types ``0 ... 0 1 ... 1``, at most ``max_length`` long.

    When the pair is too long, the longer segment loses its last token until the pair fits
    (BERT's rule): a short segment keeps all of its tokens, and both keep at least one.
    """
    check_token_id(cls_id, "cls_id")
    check_token_id(sep_id, "sep_id")
    check_positive_int(max_length, "max_length")
    if max_length < 5:
        raise ValueError(f"max_length must be >= 5 to hold [CLS] A [SEP] B [SEP] with one token each, got {max_length}")
    for name, segment in (("first", first), ("second", second)):
        if isinstance(segment, (str, bytes)) or not isinstance(segment, Sequence):
            raise TypeError(f"{name} must be a list of token ids, got {type(segment).__name__}")
        if len(segment) == 0:
            raise ValueError(f"{name} is an empty segment; drop empty lines before building NSP pairs")
    keep_first, keep_second = len(first), len(second)
    while keep_first + keep_second > max_length - 3:
        if keep_first > keep_second:
            keep_first -= 1
        else:
            keep_second -= 1
    a, b = list(first[:keep_first]), list(second[:keep_second])
    input_ids = [cls_id, *a, sep_id, *b, sep_id]
    token_type_ids = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    return input_ids, token_type_ids


def nsp_batch(
    pairs: Sequence[NspPair],
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_length: int,
) -> NspBatch:
    """Pack each pair with :func:`pack_nsp_pair` and pad them to the longest one in the batch."""
    if not isinstance(pairs, Sequence) or len(pairs) == 0:
        raise ValueError("pairs must be a non-empty sequence of NspPair (see sample_nsp_pairs)")
    check_token_id(pad_id, "pad_id")
    packed = [pack_nsp_pair(p.first, p.second, cls_id=cls_id, sep_id=sep_id, max_length=max_length) for p in pairs]
    length = max(len(ids) for ids, _ in packed)
    input_ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)  # (B, T)
    token_type_ids = torch.zeros((len(pairs), length), dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(pairs), length), dtype=torch.bool)  # (B, T)
    for row, (ids, types) in enumerate(packed):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        token_type_ids[row, : len(types)] = torch.tensor(types)
        attention_mask[row, : len(ids)] = True
    is_next = torch.tensor([int(p.is_next) for p in pairs], dtype=torch.long)  # (B,)
    return NspBatch(input_ids, token_type_ids, attention_mask, is_next)


# ----------------------------------------------------------------------------------------------
# RTD: the generator's samples replace the masked tokens


def replace_tokens(
    masked_ids: torch.Tensor,
    labels: torch.Tensor,
    generator_logits: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ELECTRA's corruption: returns ``(corrupted_ids, is_replaced)``, both shaped like ``masked_ids``.

    At every masked position (``labels != IGNORE_INDEX``) a token is sampled from the generator,

        x_hat_t ~ softmax(generator_logits_t / temperature),

    and written into the sequence; other positions keep their token. ``is_replaced`` (long) is 1
    where the sampled token differs from the original ``labels_t`` and 0 elsewhere: a sample that
    happens to equal the original counts as *not* replaced, as in ELECTRA, since the discriminator
    could not tell it apart. Sampling is not differentiable, so the logits are detached: no
    gradient of the discriminator's loss reaches the generator through the samples.
    """
    check_min_rank(masked_ids, "masked_ids", 1, "(..., T)")
    check_tensor(labels, "labels")
    check_tensor(generator_logits, "generator_logits")
    check_floating(generator_logits, "generator_logits")
    if labels.shape != masked_ids.shape:
        raise ValueError(
            f"labels must have the shape of masked_ids {tuple(masked_ids.shape)}, got {tuple(labels.shape)}"
        )
    if generator_logits.shape[:-1] != masked_ids.shape:
        raise ValueError(
            f"generator_logits must have shape (*masked_ids.shape, V) = ({', '.join(map(str, masked_ids.shape))}, V), "
            f"got {tuple(generator_logits.shape)}"
        )
    vocab_size = generator_logits.shape[-1]
    check_token_ids(masked_ids, "masked_ids", vocab_size)
    check_labels(labels, "labels", vocab_size, IGNORE_INDEX)
    check_positive_number(temperature, "temperature")
    check_generator(generator)

    selected = labels != IGNORE_INDEX  # (...)
    logits = generator_logits.detach()[selected] / temperature  # (N, V) only the masked positions
    sampled = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)  # (N,)
    corrupted_ids = masked_ids.clone()
    corrupted_ids[selected] = sampled.to(masked_ids.dtype)
    is_replaced = torch.zeros_like(labels, dtype=torch.long)
    is_replaced[selected] = (sampled != labels[selected]).long()
    return corrupted_ids, is_replaced


# ----------------------------------------------------------------------------------------------
# PLM: a random factorisation order, the last 1/K of it predicted (XLNet)


def num_predicted(T: int, K: float) -> int:
    """How many positions partial prediction scores: the last ``T/K`` of the order, rounded, at least one.

    XLNet cuts the order at ``c`` with ``|z| / (|z| − c) ≈ K`` (K = 6 or 7 in the paper) and predicts
    only ``z_>c``: the first tokens of an order have too little context to be worth predicting.
    """
    check_positive_number(K, "K")
    if K < 1:
        raise ValueError(f"K must be >= 1 (1 predicts every position), got {K}")
    return max(1, min(T, round(T / K)))


class PermutationExample(NamedTuple):
    """A batch for XLNet's permutation LM (``llm_tutorial.models.permutation_lm.PermutationLM``)."""

    input_ids: torch.Tensor  # (B, T) the text, unchanged
    order: torch.Tensor  # (B, T) a random permutation of 0..T-1 per row: the factorisation order z
    targets: torch.Tensor  # (B, P) the positions predicted: the last P = round(T/K) of the order
    labels: torch.Tensor  # (B, P) the tokens at those positions


def permutation_lm_example(
    input_ids: torch.Tensor,
    *,
    K: float = 6.0,
    generator: torch.Generator | None = None,
) -> PermutationExample:
    """XLNet's training example: one order ``z`` per row, uniform over the T! permutations, and the
    positions ``z_{T−P} … z_{T−1}`` as targets, with ``P = round(T/K)`` (partial prediction, K = 6 or 7
    in the paper). The text itself is not reordered and not corrupted: the order reaches the model
    only through its attention masks (:func:`llm_tutorial.nn.permutation.permutation_masks`)."""
    check_min_rank(input_ids, "input_ids", 2, "(B, T)")
    check_dtype(input_ids, "input_ids", INTEGER_DTYPES)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    check_generator(generator)
    B, T = input_ids.shape
    P = num_predicted(T, K)
    order = torch.rand(B, T, generator=generator, device=input_ids.device).argsort(dim=-1)  # (B, T) uniform permutations
    targets = order[:, T - P:]  # (B, P)
    return PermutationExample(input_ids, order, targets, input_ids.long().gather(1, targets))
