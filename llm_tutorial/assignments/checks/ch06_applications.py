"""Checks of chapter 6's exercises: the best answer span of extractive QA, and the weights a
reader takes from a pre-trained encoder.

Span search: the grader judges each span by its definition rather than by matching one answer: it must be
allowed at both ends, satisfy ``i ≤ j < i + max_answer_length``, and score ``s_i + e_j`` as high
as the best such span (found here by brute force in float64; a tie may go either way). Messages
name the row, the rule broken, and the best span.

Weight transfer: the grader builds a small pre-trained ``Bert`` and a fresh ``BertForSpanQA`` of
the same (randomly drawn) sizes, fills every tensor with its own random values, and asks for the
reader's state dict. The reference is the definition itself: exactly the fresh reader's names;
``encoder.*`` from the pre-trained model, ``head.*`` as the fresh reader has them.
"""

from __future__ import annotations

import torch

from ...models.bert import Bert, BertConfig
from ...models.qa import BertForSpanQA
from . import Case, Check, NotebookChecks, definitions_only, describe, randint

SCORE_TOLERANCE = 1e-5  # float32 logits summed in another order may differ in the last bits


def cases(generator: torch.Generator) -> list[Case]:
    sizes = [(1, 1, 1, 1.0), (2, 3, 1, 1.0), (3, 6, 2, 0.7), (4, 9, 3, 0.5), (4, randint(generator, 15, 31), randint(generator, 2, 7), 0.6),
             (3, 8, 40, 0.7)]
    found = []
    for number, (B, T, max_length, density) in enumerate(sizes):
        start, end = torch.randn(2, B, T, generator=generator)
        allowed = torch.rand(B, T, generator=generator) < density
        allowed[:, 0] = True
        if number == 3:  # a row with one allowed position: the only span is (T-1, T-1)
            allowed[1] = False
            allowed[1, T - 1] = True
        found.append(Case("best_span_loop", (start, end, allowed, max_length),
                          f"best_span_loop(start_logits, end_logits, allowed, {max_length}) with {B} rows of {T} positions"))
        if number == 1:
            found.append(_traps(generator))
    return found


def _traps(generator: torch.Generator, T: int = 8, max_length: int = 2) -> Case:
    """Three rows whose highest s_i + e_j breaks one rule each: too long, backwards, not allowed."""
    start, end = torch.randn(2, 3, T, generator=generator) * 0.1
    allowed = torch.ones(3, T, dtype=torch.bool)
    i = randint(generator, 0, T - max_length)
    start[0, i], end[0, i + max_length] = 5.0, 5.0  # j = i + max_length: one token too many
    i = randint(generator, 1, T)
    start[1, i], end[1, i - 1] = 5.0, 5.0  # j = i - 1: ends before it starts
    i = randint(generator, 0, T - 1)
    start[2, i], end[2, i + 1], allowed[2, i + 1] = 5.0, 5.0, False  # (i, i + 1), but it may not end at i + 1
    return Case("best_span_loop", (start, end, allowed, max_length),
                f"best_span_loop(start_logits, end_logits, allowed, {max_length}) with 3 rows of {T} positions whose "
                "highest s_i + e_j is a span that breaks a rule")


def _spans(got, rows: int) -> list[tuple[int, int]] | str:
    """The spans as (i, j) ints, or what is wrong with their form."""
    if isinstance(got, torch.Tensor) and not got.is_floating_point() and got.dim() == 2 and got.shape[1] == 2:
        got = got.tolist()
    if not isinstance(got, (list, tuple)):
        return f"best_span_loop should return a list of (i, j) pairs, one per row; it returned {describe(got)}"
    if len(got) != rows:
        return f"expected {rows} spans, one per row; yours gave {len(got)}"
    spans = []
    for span in got:
        if isinstance(span, torch.Tensor) and span.numel() == 2 and not span.is_floating_point():
            span = span.tolist()
        if not (isinstance(span, (list, tuple)) and len(span) == 2):
            return f"each span should be a pair of ints (i, j); yours include {describe(span)}"
        odd = [p for p in span if not (type(p) is int or _whole(p))]
        if odd:
            return f"each span should be a pair of ints (i, j); yours include {describe(odd[0])}"
        spans.append((int(span[0]), int(span[1])))
    return spans


def _whole(value) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool


def judge(case: Case, got) -> str | None:
    start, end, allowed, max_length = case.args
    spans = _spans(got, start.shape[0])
    if isinstance(spans, str):
        return spans
    T = start.shape[1]
    for row, (i, j) in enumerate(spans):
        s, e, ok = start[row].double(), end[row].double(), allowed[row]
        if not (0 <= i < T and 0 <= j < T):
            return f"row {row}: your span ({i}, {j}) lies outside the {T} positions 0..{T - 1}"
        if j < i:
            return f"row {row}: your span ({i}, {j}) ends before it starts; a span needs i ≤ j"
        if j >= i + max_length:
            return (f"row {row}: your span ({i}, {j}) has {j - i + 1} tokens; max_answer_length = {max_length} allows "
                    f"at most {max_length} (j < i + max_answer_length)")
        for position in (i, j):
            if not ok[position]:
                return f"row {row}: your span ({i}, {j}) uses position {position}, where allowed[{row}, {position}] is False"
        width = torch.arange(T)[None, :] - torch.arange(T)[:, None]  # (T, T): j − i
        valid = (width >= 0) & (width < max_length) & ok[:, None] & ok[None, :]
        total = (s[:, None] + e[None, :]).masked_fill(~valid, float("-inf"))  # (T, T): s_i + e_j
        best = int(total.argmax())
        bi, bj = divmod(best, T)
        if total[i, j] < total[bi, bj] - SCORE_TOLERANCE:
            return (f"row {row}: your span ({i}, {j}) scores s_{i} + e_{j} = {total[i, j].item():.4f}; the best allowed span "
                    f"is ({bi}, {bj}) with {total[bi, bj].item():.4f}")
    return None


# --- exercise 2: a reader that starts from a pre-trained encoder ----------------------------------

PRETRAINING_HEADS = ("pooler.", "mlm_head.", "nsp_head.")


def _random_states(generator: torch.Generator, config: BertConfig) -> tuple[dict, dict]:
    """State dicts of a Bert and a fresh BertForSpanQA of ``config``, every tensor random and distinct."""
    with torch.random.fork_rng():
        torch.manual_seed(randint(generator, 0, 2**31))
        names = {"pretrained": Bert(config).state_dict(), "fresh": BertForSpanQA(config).state_dict()}
    states = {}
    for which, state in names.items():
        states[which] = {name: torch.randn(value.shape, generator=generator) for name, value in state.items()}
    pretrained = states["pretrained"]
    pretrained["mlm_head.decoder.weight"] = pretrained["encoder.embeddings.token.weight"].clone()  # tied in a Bert
    return pretrained, states["fresh"]


def transfer_cases(generator: torch.Generator) -> list[Case]:
    found = []
    for n_layer, d_model, n_head in ((1, 8, 2), (2, 12, 3), (randint(generator, 1, 4), 16, 4)):
        config = BertConfig(vocab_size=randint(generator, 11, 30), d_model=d_model, n_head=n_head, n_layer=n_layer,
                            d_ff=2 * d_model, max_len=randint(generator, 6, 20), dropout=0.0)
        pretrained, fresh = _random_states(generator, config)
        found.append(Case("reader_state_from_pretrained", (pretrained, fresh),
                          f"reader_state_from_pretrained(pretrained, fresh) for {n_layer} layer(s) of width {d_model}"))
    return found


def judge_transfer(case: Case, got) -> str | None:
    pretrained, fresh = case.args
    if not isinstance(got, dict) or not all(isinstance(k, str) for k in got):
        return f"reader_state_from_pretrained should return a dict from names to tensors; it returned {describe(got)}"
    extra = sorted(set(got) - set(fresh))
    missing = sorted(set(fresh) - set(got))
    heads = [name for name in extra if name.startswith(PRETRAINING_HEADS)]
    if heads:
        return (f"your state has {heads[0]!r}: the pre-training heads (pooler, mlm_head, nsp_head) are left behind — "
                "the reader has no such module, and load_state_dict would refuse the name; keep exactly the fresh reader's names")
    if extra:
        return f"your state has {extra[0]!r}, which the reader does not have; keep exactly the fresh reader's names"
    if any(name.startswith("head.") for name in missing):
        return ("your state lacks the span head (head.score.weight, head.score.bias): the pre-trained model has none, "
                "so it comes from the fresh reader")
    if missing:
        return f"your state lacks {missing[0]!r}; every name of the fresh reader must be there"
    for name, value in got.items():
        if not isinstance(value, torch.Tensor):
            return f"{name!r} should be a tensor; yours is {describe(value)}"
        if value.shape != fresh[name].shape:
            return f"{name!r} should have shape {tuple(fresh[name].shape)}; yours has {tuple(value.shape)}"
    encoder = [name for name in fresh if name.startswith("encoder.")]
    wrong = [name for name in encoder if not torch.equal(got[name], pretrained[name])]
    if wrong:
        kept_fresh = [name for name in wrong if torch.equal(got[name], fresh[name])]
        if len(kept_fresh) == len(encoder):
            return ("every encoder.* tensor is still the fresh reader's: nothing was taken from the pre-trained model; "
                    "encoder.* must hold the pre-trained values")
        if kept_fresh and all(name.startswith("encoder.embeddings.") for name in wrong):
            return (f"{wrong[0]!r} is still the fresh reader's value: you took the blocks but not the embeddings "
                    "(token, position, token-type tables and their LayerNorm), which masked-LM pre-training trained too; "
                    "copy every encoder.* tensor")
        return f"{wrong[0]!r} should be the pre-trained model's value; yours is neither the pre-trained nor the fresh one"
    for name in fresh:
        if name.startswith("head.") and not torch.equal(got[name], fresh[name]):
            return (f"{name!r} should keep the fresh reader's initialisation: the span head is new, and nothing of the "
                    "pre-trained model belongs in it")
    return None


CHECKS = NotebookChecks([Check("best_span_loop_tests", cases, judge),
                         Check("reader_state_from_pretrained_tests", transfer_cases, judge_transfer)],
                        setup=definitions_only)
