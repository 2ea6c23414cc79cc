"""Chapter 3's two newer exercises (XLNet's query-stream mask, T5's span corruption): the grader's
checks pass the reference solutions on fresh cases and name each realistic slip."""

import pytest
import torch

from llm_tutorial.assignments.checks import ch03_algorithms as checks
from llm_tutorial.data.span_corruption import corrupt_with_mask
from llm_tutorial.nn import permutation_masks


def ranks(order):
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank


MASKS = {
    "reference": lambda o: permutation_masks(o)[1],
    "content": lambda o: permutation_masks(o)[0],
    "transposed": lambda o: permutation_masks(o)[1].T,
    "order as ranks": lambda o: o[None, :] < o[:, None],
    "identity": lambda o: torch.ones(len(o), len(o), dtype=torch.bool).tril(-1),
    "float": lambda o: permutation_masks(o)[1].float(),
}
MASK_HINTS = {"content": "content-stream mask", "transposed": "transposed", "order as ranks": "inverse permutation",
              "identity": "identity order", "float": "boolean"}


def run(check, function, seed=0):
    messages = [check.judge(case, function(*case.args)) for case in check.cases(torch.Generator().manual_seed(seed))]
    return [m for m in messages if m is not None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_references_pass(seed):
    assert run(checks.CHECKS.checks["query_stream_mask_tests"], MASKS["reference"], seed) == []
    span = lambda ids, mask, sentinels: tuple(corrupt_with_mask(ids, mask, sentinels)[:2])
    assert run(checks.CHECKS.checks["corrupt_spans_tests"], span, seed) == []


@pytest.mark.parametrize("slip", sorted(MASK_HINTS))
def test_mask_slips_fail_with_their_hint(slip):
    messages = run(checks.CHECKS.checks["query_stream_mask_tests"], MASKS[slip])
    assert messages and MASK_HINTS[slip] in messages[0]


def slipped_corruption(per_token=False, same=False, final=True, after=False):
    def corrupt(ids, mask, sentinels):
        inputs, targets, k = [], [], 0
        for i, (token, noisy) in enumerate(zip(ids.tolist(), mask.tolist())):
            starts = noisy and (per_token or i == 0 or not mask[i - 1])
            if starts:
                sentinel = sentinels[0] if same else sentinels[k]
                inputs.append(sentinel)
                if not after:
                    targets.append(sentinel)
                k += 1
            (targets if noisy else inputs).append(token)
            if starts and after:
                targets.append(sentinel)
        if final:
            targets.append(sentinels[0] if same else sentinels[k])
        return torch.tensor(inputs), torch.tensor(targets)
    return corrupt


@pytest.mark.parametrize("switches, hint", [
    (dict(per_token=True), "one sentinel per dropped token"),
    (dict(same=True), "the same sentinel"),
    (dict(final=False), "one more sentinel"),
])
def test_span_slips_fail_with_their_hint(switches, hint):
    messages = run(checks.CHECKS.checks["corrupt_spans_tests"], slipped_corruption(**switches))
    assert messages and hint in messages[0], messages[:1]
    assert run(checks.CHECKS.checks["corrupt_spans_tests"], slipped_corruption()) == []  # the switches' default is right
