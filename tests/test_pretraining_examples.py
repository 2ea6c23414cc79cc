"""Pre-training examples: rates within statistical tolerance, exact labels, reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from llm_tutorial.data import load_text
from llm_tutorial.data.pretraining_examples import (
    NspPair,
    causal_lm_example,
    mask_tokens,
    nsp_batch,
    pack_nsp_pair,
    replace_tokens,
    sample_nsp_pairs,
)
from llm_tutorial.losses import IGNORE_INDEX

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIALS = (PAD, CLS, SEP, MASK)
VOCAB = 1000


def within(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    """``observed`` is a share of ``n`` Bernoulli(p) draws: within ``sigmas`` standard errors of p."""
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def batch_with_specials(gen: torch.Generator, batch: int = 200, length: int = 512) -> torch.Tensor:
    """Random ordinary tokens framed as ``[CLS] ... [SEP] [PAD]...`` with a [SEP] in the middle."""
    ids = torch.randint(len(SPECIALS), VOCAB, (batch, length), generator=gen)
    ids[:, 0] = CLS
    ids[:, length // 2] = SEP
    lengths = torch.randint(length // 2 + 2, length + 1, (batch,), generator=gen)
    for row, n in enumerate(lengths.tolist()):
        ids[row, n - 1] = SEP
        ids[row, n:] = PAD
    return ids


def test_mask_tokens_rates_labels_and_specials() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = batch_with_specials(gen)
    masked, labels = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, special_ids=[PAD, CLS, SEP], generator=gen)

    special = torch.isin(ids, torch.tensor(SPECIALS))
    selected = labels != IGNORE_INDEX
    assert not (selected & special).any(), "a special token was selected"
    assert torch.equal(masked[special], ids[special])
    assert torch.equal(labels[selected], ids[selected]), "labels must hold the original ids"
    assert torch.equal(masked[~selected], ids[~selected]), "unselected tokens must not change"

    n_ordinary, n_selected = int((~special).sum()), int(selected.sum())
    assert within(n_selected / n_ordinary, 0.15, n_ordinary)
    became_mask = masked[selected] == MASK
    unchanged = masked[selected] == ids[selected]
    became_random = ~became_mask & ~unchanged
    # a random draw equals the original with probability 1/996: it then looks unchanged
    p_random_visible = 0.1 * (1 - 1 / (VOCAB - len(SPECIALS)))
    assert within(became_mask.float().mean().item(), 0.8, n_selected)
    assert within(became_random.float().mean().item(), p_random_visible, n_selected)
    assert within(unchanged.float().mean().item(), 1 - 0.8 - p_random_visible, n_selected)

    random_tokens = masked[selected][became_random]
    assert not torch.isin(random_tokens, torch.tensor(SPECIALS)).any(), "random replacements must not be special"
    counts = torch.bincount(random_tokens, minlength=VOCAB)[len(SPECIALS):]
    assert counts.float().std() < 3 * math.sqrt(random_tokens.numel() / len(counts)), "random tokens not uniform"


def test_mask_tokens_extremes_and_shapes() -> None:
    ids = torch.tensor([CLS, 10, 11, 12, SEP, PAD], dtype=torch.int32)
    all_masked, labels = mask_tokens(ids, mask_id=MASK, vocab_size=20, special_ids=SPECIALS, mask_prob=1.0)
    assert all_masked.dtype == torch.int32 and labels.dtype == torch.long
    assert labels.tolist() == [IGNORE_INDEX, 10, 11, 12, IGNORE_INDEX, IGNORE_INDEX]
    unmasked, labels = mask_tokens(ids, mask_id=MASK, vocab_size=20, special_ids=SPECIALS, mask_prob=0.0)
    assert torch.equal(unmasked, ids) and (labels == IGNORE_INDEX).all()


def test_mask_tokens_is_reproducible_with_a_seeded_generator() -> None:
    ids = batch_with_specials(torch.Generator().manual_seed(1), batch=8, length=64)

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, generator=gen)

    first, second, other = run(7), run(7), run(8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])


def test_causal_lm_example_shifts_by_one() -> None:
    ids = torch.randint(50, (3, 9))
    inputs, targets = causal_lm_example(ids)
    assert inputs.shape == targets.shape == (3, 8)
    assert torch.equal(inputs, ids[:, :8]) and torch.equal(targets, ids[:, 1:])
    assert causal_lm_example(torch.tensor([4, 5])) == (torch.tensor([4]), torch.tensor([5]))


@pytest.fixture(scope="module")
def shakespeare_segments() -> list[list[int]]:
    """Non-empty lines of Tiny Shakespeare, as character ids."""
    lines = [line for line in load_text("tinyshakespeare").splitlines() if line.strip()]
    alphabet = {ch: i + len(SPECIALS) for i, ch in enumerate(sorted(set("".join(lines))))}
    return [[alphabet[ch] for ch in line] for line in lines]


def test_nsp_pairs_are_balanced_and_true_next_is_next(shakespeare_segments: list[list[int]]) -> None:
    segments = shakespeare_segments
    pairs = sample_nsp_pairs(segments, generator=torch.Generator().manual_seed(0))
    assert len(pairs) == len(segments) - 1
    is_next = torch.tensor([p.is_next for p in pairs], dtype=torch.float64)
    assert within(is_next.mean().item(), 0.5, len(pairs))

    position = {id(segment): i for i, segment in enumerate(segments)}  # identity: lines repeat in the play
    offsets = []
    for i, pair in enumerate(pairs):
        assert pair.first is segments[i]
        j = position[id(pair.second)]
        assert (j == i + 1) == bool(pair.is_next), f"pair {i}: second segment {j}, is_next={pair.is_next}"
        if not pair.is_next:
            offsets.append(j - i)
    offsets = torch.tensor(offsets)
    assert (offsets < 0).any() and (offsets > 1).any(), "random segments must come from anywhere in the corpus"
    assert within((offsets < 0).float().mean().item(), 0.5, len(offsets), sigmas=6)


def test_nsp_pairs_are_reproducible() -> None:
    segments = [[i + 4] for i in range(50)]
    first = sample_nsp_pairs(segments, generator=torch.Generator().manual_seed(3))
    again = sample_nsp_pairs(segments, generator=torch.Generator().manual_seed(3))
    other = sample_nsp_pairs(segments, generator=torch.Generator().manual_seed(4))
    assert first == again and first != other


def test_pack_nsp_pair_layout() -> None:
    ids, types = pack_nsp_pair([10, 11], [20, 21, 22], cls_id=CLS, sep_id=SEP, max_length=32)
    assert ids == [CLS, 10, 11, SEP, 20, 21, 22, SEP]
    assert types == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("seed", range(6))
def test_pack_nsp_pair_truncates_the_longer_segment(seed: int) -> None:
    """Closed form of BERT's rule: the shorter segment survives whole if it fits in half the budget;
    otherwise both are cut to half, the first segment keeping the odd token."""
    gen = torch.Generator().manual_seed(seed)
    len_a, len_b = (int(n) for n in torch.randint(1, 40, (2,), generator=gen))
    max_length = int(torch.randint(5, 50, (1,), generator=gen))
    a, b = list(range(100, 100 + len_a)), list(range(200, 200 + len_b))
    ids, types = pack_nsp_pair(a, b, cls_id=CLS, sep_id=SEP, max_length=max_length)

    budget = max_length - 3
    if len_a + len_b <= budget:
        want_a, want_b = len_a, len_b
    elif min(len_a, len_b) <= budget // 2:
        want_a, want_b = (len_a, budget - len_a) if len_a < len_b else (budget - len_b, len_b)
    else:
        want_a, want_b = math.ceil(budget / 2), budget // 2
    assert ids == [CLS, *a[:want_a], SEP, *b[:want_b], SEP]
    assert types == [0] * (want_a + 2) + [1] * (want_b + 1)
    assert len(ids) <= max_length


def test_nsp_batch_pads_and_masks() -> None:
    pairs = [NspPair([10, 11], [12], 1), NspPair([13], [14, 15, 16, 17], 0)]
    batch = nsp_batch(pairs, cls_id=CLS, sep_id=SEP, pad_id=PAD, max_length=16)
    assert batch.input_ids.tolist() == [[CLS, 10, 11, SEP, 12, SEP, PAD, PAD], [CLS, 13, SEP, 14, 15, 16, 17, SEP]]
    assert batch.token_type_ids.tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]]
    assert batch.attention_mask.tolist() == [[True] * 6 + [False] * 2, [True] * 8]
    assert batch.is_next.tolist() == [1, 0]


def one_hot_logits(token_per_position: list[list[int]], vocab_size: int) -> torch.Tensor:
    """Logits whose softmax puts all mass on one token per position (-inf elsewhere)."""
    logits = torch.full((len(token_per_position), len(token_per_position[0]), vocab_size), -math.inf)
    for b, row in enumerate(token_per_position):
        for t, token in enumerate(row):
            logits[b, t, token] = 0.0
    return logits


def test_replace_tokens_labels_on_hand_built_cases() -> None:
    masked = torch.tensor([[CLS, MASK, 7, MASK, 9, SEP], [CLS, 5, MASK, 6, SEP, PAD]])
    ignored = IGNORE_INDEX
    labels = torch.tensor([[ignored, 4, ignored, 8, 5, ignored], [ignored, ignored, 6, ignored, ignored, ignored]])
    # the generator is certain of: 4 (= original), 11 (≠ 8), 9 (= the unchanged 9, ≠ original 5), 6 (= original)
    logits = one_hot_logits([[0, 4, 0, 11, 9, 0], [0, 0, 6, 0, 0, 0]], vocab_size=12)
    corrupted, is_replaced = replace_tokens(masked, labels, logits, generator=torch.Generator().manual_seed(0))
    assert corrupted.tolist() == [[CLS, 4, 7, 11, 9, SEP], [CLS, 5, 6, 6, SEP, PAD]]
    assert is_replaced.tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]]
    assert is_replaced.dtype == torch.long


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_replace_tokens_samples_from_the_tempered_softmax(temperature: float) -> None:
    n, logits_row = 40_000, torch.tensor([2.0, 0.0, -1.0, 1.0, 0.5])
    masked = torch.full((1, n), MASK)
    labels = torch.zeros((1, n), dtype=torch.long)  # original token 0 everywhere
    logits = logits_row.expand(1, n, 5)
    gen = torch.Generator().manual_seed(1)
    corrupted, is_replaced = replace_tokens(masked, labels, logits, generator=gen, temperature=temperature)
    expected = torch.softmax(logits_row / temperature, dim=0)
    observed = torch.bincount(corrupted[0], minlength=5).double() / n
    for p, q in zip(observed.tolist(), expected.tolist()):
        assert within(p, q, n)
    assert torch.equal(is_replaced[0], (corrupted[0] != 0).long())


def test_replace_tokens_is_reproducible_and_detached() -> None:
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(4, 30, (4, 16), generator=gen)
    masked, labels = mask_tokens(ids, mask_id=MASK, vocab_size=30, special_ids=SPECIALS, mask_prob=0.5, generator=gen)
    logits = torch.randn(4, 16, 30, generator=gen, requires_grad=True)
    first = replace_tokens(masked, labels, logits, generator=torch.Generator().manual_seed(5))
    again = replace_tokens(masked, labels, logits, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not first[0].requires_grad and not first[1].requires_grad
    unmasked = labels == IGNORE_INDEX
    assert torch.equal(first[0][unmasked], masked[unmasked]) and not first[1][unmasked].any()


IDS = torch.tensor([[CLS, 10, 11, SEP]])
LOGITS = torch.zeros(1, 4, 20)
NO_LABELS = torch.full((1, 4), IGNORE_INDEX)

BAD_INPUTS = [
    (lambda: mask_tokens(IDS.float(), mask_id=MASK, vocab_size=20, special_ids=SPECIALS), TypeError, "integer token"),
    (lambda: mask_tokens(IDS, mask_id=MASK, vocab_size=11, special_ids=SPECIALS), ValueError, r"outside \[0, 11\)"),
    (lambda: mask_tokens(IDS, mask_id=20, vocab_size=20, special_ids=SPECIALS), ValueError, "mask_id must be a token"),
    (lambda: mask_tokens(IDS, mask_id=MASK, vocab_size=20, special_ids="[CLS]"), TypeError, "iterable of token ids"),
    (lambda: mask_tokens(IDS, mask_id=MASK, vocab_size=20, special_ids=[CLS, 25]), ValueError, "special_ids"),
    (lambda: mask_tokens(IDS, mask_id=MASK, vocab_size=20, special_ids=SPECIALS, mask_prob=1.2), ValueError, "mask_p"),
    (
        lambda: mask_tokens(torch.tensor([[0, 1, 2]]), mask_id=3, vocab_size=4, special_ids=[0, 1, 2]),
        ValueError,
        "all 4 ids",
    ),
    (lambda: mask_tokens(IDS, mask_id=MASK, vocab_size=0, special_ids=SPECIALS), ValueError, "vocab_size must be"),
    (lambda: causal_lm_example(torch.tensor([5])), ValueError, "at least 2 tokens"),
    (lambda: causal_lm_example(torch.tensor([0.5, 1.5])), TypeError, "ids must have dtype"),
    (lambda: sample_nsp_pairs([[5, 6]]), ValueError, "at least 2 segments"),
    (lambda: sample_nsp_pairs("to be or not to be"), TypeError, "sequence of token-id lists"),
    (lambda: pack_nsp_pair([5], [6], cls_id=CLS, sep_id=SEP, max_length=4), ValueError, "max_length must be >= 5"),
    (lambda: pack_nsp_pair([], [6], cls_id=CLS, sep_id=SEP, max_length=8), ValueError, "first is an empty segment"),
    (lambda: pack_nsp_pair([5], [6], cls_id=-1, sep_id=SEP, max_length=8), ValueError, "cls_id must be a token id"),
    (lambda: nsp_batch([], cls_id=CLS, sep_id=SEP, pad_id=PAD, max_length=8), ValueError, "non-empty sequence"),
    (lambda: replace_tokens(IDS, NO_LABELS, torch.zeros(1, 5, 20)), ValueError, "generator_logits must have shape"),
    (lambda: replace_tokens(IDS, NO_LABELS[:, :3], LOGITS), ValueError, "labels must have the shape"),
    (lambda: replace_tokens(IDS, torch.tensor([[-100, 25, 1, 2]]), LOGITS), ValueError, r"hold ids in \[0, 20\)"),
    (lambda: replace_tokens(IDS, NO_LABELS, LOGITS.long()), TypeError, "floating-point"),
    (lambda: replace_tokens(IDS, NO_LABELS, LOGITS, temperature=0.0), ValueError, "temperature"),
    (lambda: replace_tokens(IDS, NO_LABELS, LOGITS, generator=7), TypeError, "generator must be a torch.Generator"),
    (lambda: sample_nsp_pairs([[4], [5]], generator="seed"), TypeError, "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
