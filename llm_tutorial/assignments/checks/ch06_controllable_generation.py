"""Check of section 6.6's exercise: FUDGE's guided next-token distribution.

``guided_log_probs(lm_logits, attribute_log_probs, strength, top_k)`` must return, per row, the
log-probabilities ``log softmax(z_i + λ·log p(a | x_<t, i))`` over the LM's ``top_k`` tokens and
−∞ elsewhere. The reference is the package's :func:`~llm_tutorial.generate.guided_logits` in
float64 on the LM's top k; known slips (no renormalisation, candidates chosen after guidance,
probabilities instead of logs, λ on the wrong factor, no top-k) are recognised and named.
"""

from __future__ import annotations

import torch

from ...generate import guided_logits
from . import Case, Check, NotebookChecks, compare_tensor, definitions_only, randint

TOLERANCE = (1e-5, 1e-4)  # float32 sums in another order; values reach −60 at λ = 8


def _case(generator: torch.Generator, B: int, V: int, k: int, strength: float) -> Case:
    lm_logits = torch.randn(B, V, generator=generator) * 2
    attribute = torch.randn(B, V, 3, generator=generator).log_softmax(-1)[..., 0]  # (B, V): log p(a | x_<t, i) ≤ 0
    return Case("guided_log_probs", (lm_logits, attribute, strength, k),
                f"guided_log_probs(lm_logits ({B}, {V}), attribute_log_probs ({B}, {V}), strength={strength:g}, top_k={k})")


def cases(generator: torch.Generator) -> list[Case]:
    return [_case(generator, 1, 3, 1, 1.0), _case(generator, 2, 5, 5, 1.0), _case(generator, 3, 10, 4, 0.0),
            _case(generator, 4, randint(generator, 12, 30), randint(generator, 2, 8), 2.5),
            _case(generator, 2, 65, 10, 8.0), _case(generator, 5, 40, 40, 0.5)]


def reference(lm_logits: torch.Tensor, attribute: torch.Tensor, strength: float, k: int) -> torch.Tensor:
    z, a = lm_logits.double(), attribute.double()
    candidates = z.topk(k, dim=-1).indices  # (B, k): the LM's top k
    return guided_logits(z, candidates, a.gather(-1, candidates), strength).log_softmax(-1).float()


def _slips(lm_logits, attribute, strength, k) -> dict[str, torch.Tensor]:
    """What each known mistake returns, with the hint that names it."""
    z, a = lm_logits.double(), attribute.double()
    top = z.topk(k, dim=-1).indices
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, top, True)
    guided = torch.where(keep, z + strength * a, float("-inf"))
    after = (z + strength * a).topk(k, dim=-1).indices
    keep_after = torch.zeros_like(keep).scatter(-1, after, True)
    return {
        "your scores are not renormalised: subtract their log-sum-exp over the candidates (log_softmax), so that "
        "the probabilities of the k candidates add up to 1": guided,
        "you returned probabilities; the function returns log-probabilities (−∞ outside the top k)":
            guided.log_softmax(-1).exp(),
        "the candidates are the LM's top k (by lm_logits alone); you chose them after adding the classifier's term":
            torch.where(keep_after, z + strength * a, float("-inf")).log_softmax(-1),
        "λ multiplies the classifier's log-probability, log p(a | ·), not the LM's logits":
            torch.where(keep, strength * z + a, float("-inf")).log_softmax(-1),
        "attribute_log_probs are already logarithms: add λ · log p(a | ·), not λ · p(a | ·)":
            torch.where(keep, z + strength * a.exp(), float("-inf")).log_softmax(-1),
        "every token outside the LM's top k must get probability 0 (log-probability −∞)":
            (z + strength * a).log_softmax(-1),
    }


def judge(case: Case, got) -> str | None:
    expected = reference(*case.args)
    problem = compare_tensor(got, expected, "your log-probabilities", tolerance=TOLERANCE)
    if problem is None:
        return None
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.is_floating_point():
        for hint, slip in _slips(*case.args).items():
            if torch.isclose(got.double(), slip, rtol=1e-4, atol=1e-4, equal_nan=True).all():
                return f"{problem}. Hint: {hint}"
    return problem


CHECKS = NotebookChecks([Check("guided_log_probs_tests", cases, judge)], setup=definitions_only)
