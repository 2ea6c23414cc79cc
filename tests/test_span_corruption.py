"""T5's span corruption: exact reconstruction, T5's counts, sentinels distinct and in order, bad inputs."""

import pytest
import torch

from llm_tutorial.data.span_corruption import (
    corrupt_with_mask,
    random_spans_noise_mask,
    reconstruct,
    span_corrupt,
    span_counts,
)

SENTINELS = list(range(1000, 1040))


def runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Brute force: (start, length) of every maximal run of True."""
    found, start = [], None
    for i, value in enumerate(mask.tolist() + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            found.append((start, i - start))
            start = None
    return found


@pytest.mark.parametrize("length", [2, 3, 7, 17, 33, 64, 101, 255])
def test_reconstruction_and_counts(length):
    generator = torch.Generator().manual_seed(length)
    for _ in range(20):
        ids = torch.randint(0, 50, (length,), generator=generator)
        example = span_corrupt(ids, sentinel_ids=SENTINELS, generator=generator)
        assert torch.equal(reconstruct(example.inputs, example.targets, SENTINELS), ids)
        n_noise, n_spans = span_counts(length)
        assert n_noise == min(max(round(length * 0.15), 1), length - 1)
        assert int(example.noise_mask.sum()) == n_noise
        spans = runs(example.noise_mask)
        assert len(spans) == n_spans
        assert not example.noise_mask[0] and example.noise_mask[-1]  # T5: kept span first, noise span last
        assert len(example.inputs) == length - n_noise + n_spans
        assert len(example.targets) == n_noise + n_spans + 1
        sentinels_in = [t for t in example.inputs.tolist() if t in SENTINELS]
        sentinels_out = [t for t in example.targets.tolist() if t in SENTINELS]
        assert sentinels_in == SENTINELS[:n_spans] and sentinels_out == SENTINELS[: n_spans + 1]
        for (start, size), sentinel in zip(spans, SENTINELS):  # each span follows its sentinel in the target
            at = example.targets.tolist().index(sentinel)
            assert example.targets[at + 1: at + 1 + size].tolist() == ids[start: start + size].tolist()


def test_t5_counts_and_mean_span_length():
    assert span_counts(512) == (77, 26)  # T5's setting: 15% of 512 tokens, mean span 3
    assert span_counts(64) == (10, 3)
    assert span_counts(2) == (1, 1)
    generator = torch.Generator().manual_seed(0)
    lengths = [size for _ in range(300) for _, size in runs(random_spans_noise_mask(512, generator=generator))]
    assert abs(sum(lengths) / len(lengths) - 77 / 26) < 1e-9  # every mask: exactly 77 tokens in 26 spans
    assert 1 <= min(lengths) and max(lengths) > 3  # span lengths vary


def test_given_mask_and_batch():
    ids = torch.tensor([5, 6, 7, 8, 9, 10])
    mask = torch.tensor([False, True, True, False, False, True])
    example = corrupt_with_mask(ids, mask, [90, 91, 92])
    assert example.inputs.tolist() == [5, 90, 8, 9, 91]
    assert example.targets.tolist() == [90, 6, 7, 91, 10, 92]
    batch = span_corrupt(torch.randint(0, 50, (4, 40)), sentinel_ids=SENTINELS, generator=torch.Generator().manual_seed(1))
    assert batch.inputs.shape == (4, 40 - 6 + 2) and batch.targets.shape == (4, 6 + 2 + 1)
    assert not torch.equal(batch.noise_mask[0], batch.noise_mask[1]) or not torch.equal(batch.noise_mask[1], batch.noise_mask[2])


def test_bad_inputs():
    ids = torch.arange(40)
    with pytest.raises(ValueError, match="needs 3 sentinels"):
        span_corrupt(ids, sentinel_ids=[100, 101])
    with pytest.raises(ValueError, match="distinct"):
        span_corrupt(ids, sentinel_ids=[100, 100, 101])
    with pytest.raises(ValueError, match="never occur in the text"):
        span_corrupt(ids, sentinel_ids=[5, 100, 101])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        span_corrupt(torch.tensor([1]), sentinel_ids=SENTINELS)
    with pytest.raises(ValueError, match="below 1"):
        span_corrupt(ids, sentinel_ids=SENTINELS, noise_density=1.0)
    with pytest.raises(TypeError):
        span_corrupt(ids.float(), sentinel_ids=SENTINELS)
    with pytest.raises(ValueError, match="shape of ids"):
        corrupt_with_mask(ids, torch.zeros(5, dtype=torch.bool), SENTINELS)
