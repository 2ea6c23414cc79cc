"""Decoder-only generation: the logits processors against Hugging Face's and hand-written
references, cached against uncached decoding, greedy tokens against Hugging Face ``generate`` on
the same weights, sampling distributions, stop tokens, streaming, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from llm_tutorial.generate import (
    apply_repetition_penalty,
    apply_temperature,
    generate,
    process_logits,
    stream,
    top_k_filter,
    top_p_filter,
)
from llm_tutorial.interop import to_hf_gpt2
from llm_tutorial.models import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

VOCAB, CONTEXT = 53, 29


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _model(preset: str, **overrides) -> GPT:
    """A tiny GPT whose weights are all perturbed, so its outputs are far from uniform."""
    sizes = dict(vocab_size=VOCAB, context_length=CONTEXT, n_layer=2, n_head=4, d_model=32)
    if preset == "llama":
        sizes["n_kv_head"] = 2
    model = GPT(GPTConfig.preset(preset, **{**sizes, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


# ---------------------------------------------------------------- logits processors


def _logits(B: int = 3, V: int = 37) -> torch.Tensor:
    return 2.0 * torch.randn(B, V)


@pytest.mark.parametrize("k", [1, 5, 36, 37, 60])
def test_top_k_matches_hugging_face(k):
    logits = _logits()
    expected = transformers.TopKLogitsWarper(top_k=k)(None, logits.clone())
    kept = top_k_filter(logits, k)
    assert torch.equal(kept, expected)
    assert (kept > float("-inf")).sum(-1).tolist() == [min(k, 37)] * 3


@pytest.mark.parametrize("p", [0.02, 0.3, 0.75, 0.99])
def test_top_p_matches_a_sorted_cumulative_sum_and_hugging_face(p):
    logits = _logits(B=4, V=41)
    kept = top_p_filter(logits, p)
    for row, out in zip(logits, kept):
        probs = row.double().softmax(-1)
        order = probs.argsort(descending=True).tolist()
        nucleus, total = set(), 0.0
        for token in order:  # the smallest most-likely set whose mass reaches p
            nucleus.add(token)
            total += probs[token].item()
            if total >= p:
                break
        assert {i for i in range(41) if out[i] > float("-inf")} == nucleus
        assert torch.equal(out[sorted(nucleus)], row[sorted(nucleus)])
    assert torch.equal(kept, transformers.TopPLogitsWarper(top_p=p)(None, logits.clone()))
    assert torch.equal(top_p_filter(logits, 1.0), logits)


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_matches_ctrl_and_hugging_face(penalty):
    logits = _logits()
    previous = torch.tensor([[1, 1, 5, 36], [0, 2, 4, 6], [7, 7, 7, 7]])
    out = apply_repetition_penalty(logits, previous, penalty)
    expected = logits.clone()
    for b, row in enumerate(previous.tolist()):
        for token in set(row):
            z = logits[b, token].item()
            expected[b, token] = z / penalty if z > 0 else z * penalty
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=0)  # the reference divides in float64
    hf = transformers.RepetitionPenaltyLogitsProcessor(penalty=penalty)(previous, logits.clone())
    assert torch.equal(out, hf)


@pytest.mark.parametrize("temperature,top_k,top_p,penalty", [(0.7, 10, 0.8, 1.2), (1.5, None, 0.5, 1.0),
                                                            (0.3, 3, None, 2.0), (1.0, None, None, 1.0)])
def test_processors_compose_in_hugging_face_order(temperature, top_k, top_p, penalty):
    logits, previous = _logits(), torch.randint(0, 37, (3, 9))
    hf = transformers.LogitsProcessorList([transformers.RepetitionPenaltyLogitsProcessor(penalty),
                                           transformers.TemperatureLogitsWarper(temperature)])
    if top_k is not None:
        hf.append(transformers.TopKLogitsWarper(top_k))
    if top_p is not None:
        hf.append(transformers.TopPLogitsWarper(top_p))
    ours = process_logits(logits, previous, temperature=temperature, top_k=top_k, top_p=top_p,
                          repetition_penalty=penalty)
    torch.testing.assert_close(ours, hf(previous, logits.clone()), rtol=1e-6, atol=0)
    torch.testing.assert_close(apply_temperature(logits, temperature), logits / temperature, rtol=0, atol=0)


def test_processors_leave_their_input_untouched():
    logits = _logits()
    before = logits.clone()
    process_logits(logits, torch.randint(0, 37, (3, 4)), temperature=0.5, top_k=4, top_p=0.5, repetition_penalty=3.0)
    assert torch.equal(logits, before)


def test_bad_processor_arguments():
    logits = _logits()
    with pytest.raises(ValueError, match="temperature must be a positive number, got 0"):
        apply_temperature(logits, 0)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match=r"top_p must be a probability in \[0, 1\]"):
        top_p_filter(logits, 1.5)
    with pytest.raises(ValueError, match="top_p must be > 0"):
        top_p_filter(logits, 0.0)
    with pytest.raises(ValueError, match="repetition_penalty must be a positive number"):
        apply_repetition_penalty(logits, torch.zeros(3, 1, dtype=torch.long), -1.0)
    with pytest.raises(ValueError, match=r"previous_ids must have shape \(B, T\) with B = 3"):
        apply_repetition_penalty(logits, torch.zeros(2, 1, dtype=torch.long), 1.2)
    with pytest.raises(ValueError, match="repetition_penalty needs previous_ids"):
        process_logits(logits, repetition_penalty=1.2)
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        top_k_filter(torch.ones(3, 5, dtype=torch.long), 2)


# ---------------------------------------------------------------- greedy decoding


def _greedy_reference(model: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """The textbook loop: run the whole sequence, append the argmax, repeat."""
    ids = prompt
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("preset", ["gpt2", "llama"])
def test_cached_and_uncached_greedy_decoding_give_identical_tokens(preset):
    model = _model(preset)
    prompt = torch.randint(0, VOCAB, (3, 5))
    cached = generate(model, prompt, 24, temperature=0)
    uncached = generate(model, prompt, 24, temperature=0, use_cache=False)
    assert cached.shape == (3, 29) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, _greedy_reference(model, prompt, 24))
    assert len(cached[:, 5:].unique()) > 3  # a real continuation, not one token repeated
    assert torch.equal(generate(model, prompt[1], 24, temperature=0), cached[1])  # (T,) in, (T + n,) out


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_tokens_match_hugging_face_generate(penalty):
    model = _model("gpt2")
    hf = to_hf_gpt2(model)
    prompt = torch.randint(0, VOCAB, (2, 4))
    ours = generate(model, prompt, 20, temperature=0, repetition_penalty=penalty)
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=20,
                             repetition_penalty=penalty, pad_token_id=0)
    assert torch.equal(ours, theirs)


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("top_k,top_p", [(5, None), (None, 0.6)])
def test_sampling_follows_the_processed_distribution(top_k, top_p):
    model = _model("gpt2")
    prompt = torch.randint(0, VOCAB, (1, 6))
    n = 6000
    first = generate(model, prompt.expand(n, -1), 1, temperature=0.7, top_k=top_k, top_p=top_p,
                     generator=torch.Generator().manual_seed(1))[:, -1]
    with torch.no_grad():  # the distribution Hugging Face's warpers give for the same weights
        logits = to_hf_gpt2(model)(prompt).logits[:, -1]
    warpers = [transformers.TemperatureLogitsWarper(0.7)]
    warpers += [transformers.TopKLogitsWarper(top_k)] if top_k else [transformers.TopPLogitsWarper(top_p)]
    expected = transformers.LogitsProcessorList(warpers)(prompt, logits)[0].softmax(-1)
    frequency = torch.bincount(first, minlength=VOCAB) / n
    assert set(first.unique().tolist()) <= set(expected.nonzero().flatten().tolist())
    assert (expected > 0).sum() > 1
    sigma = (expected * (1 - expected) / n).sqrt()
    assert ((frequency - expected).abs() <= 4 * sigma + 1e-3).all(), (frequency, expected)


def test_a_generator_makes_sampling_reproducible():
    model = _model("llama")
    prompt = torch.randint(0, VOCAB, (2, 3))

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed + 100)  # the global state must not matter
        return generate(model, prompt, 20, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))


# ---------------------------------------------------------------- stop tokens, streaming


def _expected_with_stops(free: torch.Tensor, start: int, stops: set[int], pad: int | None) -> torch.Tensor:
    """Each row of the unstopped output cut after its first stop token and padded, the batch
    shortened to the last stop if every row stopped."""
    rows, ends = [], []
    for row in free.tolist():
        hit = next((t for t in range(start, len(row)) if row[t] in stops), None)
        end = len(row) if hit is None else hit + 1
        fill = row[end - 1] if pad is None else pad
        rows.append(row[:end] + [fill] * (len(row) - end))
        ends.append(end if hit is not None else len(row))
    return torch.tensor(rows)[:, : max(ends)]


@pytest.mark.parametrize("pad_id", [None, 0])
def test_stop_tokens_freeze_finished_rows(pad_id):
    model = _model("gpt2")
    prompt = torch.randint(0, VOCAB, (3, 4))
    free = generate(model, prompt, 16, temperature=0)
    some = {free[0, 6].item()}  # ends row 0 by its third new token; other rows may run on
    every = {free[0, 5].item(), free[1, 6].item(), free[2, 4].item()}  # every row stops early
    for stops in (some, every):
        out = generate(model, prompt, 16, temperature=0, stop_tokens=sorted(stops), pad_id=pad_id)
        assert torch.equal(out, _expected_with_stops(free, 4, stops, pad_id))
    assert out.size(1) < free.size(1)


def test_stream_yields_the_tokens_of_generate():
    model = _model("gpt2")
    prompt = torch.randint(0, VOCAB, (2, 5))
    single = list(stream(model, prompt[0].tolist(), 12, temperature=0))
    assert all(isinstance(token, int) for token in single)
    assert single == generate(model, prompt[0], 12, temperature=0)[5:].tolist()
    batch = torch.stack(list(stream(model, prompt, 12, top_k=8, generator=torch.Generator().manual_seed(3))), 1)
    assert torch.equal(batch, generate(model, prompt, 12, top_k=8, generator=torch.Generator().manual_seed(3))[:, 5:])
    stops = list(stream(model, prompt[0], 12, temperature=0, stop_tokens=single[3]))
    assert stops == single[: single.index(single[3]) + 1]
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        stream(model, prompt, 0)  # checked at the call, before any token is asked for


# ---------------------------------------------------------------- how the work is done


def test_prefill_once_then_one_token_per_step_through_one_cache():
    model = _model("llama")
    calls, caches = [], []
    run, make_cache = model.hidden_states, model.new_cache
    model.hidden_states = lambda idx, cache: calls.append((tuple(idx.shape), cache)) or run(idx, cache)
    model.new_cache = lambda *a, **k: caches.append(make_cache(*a, **k)) or caches[-1]
    heads = []
    model.lm_head.register_forward_hook(lambda m, args, out: heads.append(tuple(args[0].shape)))
    generate(model, torch.randint(0, VOCAB, (2, 7)), 6, temperature=0)
    assert [shape for shape, _ in calls] == [(2, 7)] + [(2, 1)] * 5  # the last token needs no forward pass
    assert heads == [(2, 32)] * 6  # the output layer sees the last position only, (B, d_model)
    assert len(caches) == 1 and all(cache is caches[0] for _, cache in calls)
    assert caches[0].max_len == 13 and caches[0].length == 12


def test_generation_runs_in_eval_mode_and_returns_ordinary_tensors():
    model = _model("gpt2", dropout=0.5).train()
    prompt = torch.randint(0, VOCAB, (2, 4))
    out = generate(model, prompt, 8, temperature=0)
    assert model.training and model.check_token_range  # restored afterwards
    assert torch.equal(out, _greedy_reference(model.eval(), prompt, 8))  # dropout was off
    assert not out.is_inference()
    model.train()
    model(out).logsumexp(-1).mean().backward()  # generated ids can feed a training step


def test_bad_generation_arguments():
    model = _model("gpt2")
    prompt = torch.randint(0, VOCAB, (2, 20))
    cases = [
        (dict(max_new_tokens=10), ValueError, r"prompt of 20 tokens plus max_new_tokens=10 exceeds the model's "
                                              r"context length 29"),
        (dict(temperature=-1.0), ValueError, "temperature must be a finite number ≥ 0"),
        (dict(top_k=0), ValueError, "top_k must be a positive integer"),
        (dict(top_p=1.5), ValueError, "top_p must be a probability"),
        (dict(repetition_penalty=0), ValueError, "repetition_penalty must be a positive number"),
        (dict(stop_tokens=[VOCAB]), ValueError, r"stop_tokens must be token ids in \[0, 53\)"),
        (dict(pad_id=0), ValueError, "give stop_tokens too"),
        (dict(stop_tokens=1, pad_id=-1), ValueError, r"pad_id must be a token id in \[0, 53\)"),
        (dict(generator=0), TypeError, "generator must be a torch.Generator"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            generate(model, prompt, **{"max_new_tokens": 3, **kwargs})
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        generate(model, prompt, 0)
    with pytest.raises(ValueError, match=r"prompt_ids must be a list of ints, a \(T,\) tensor or a \(B, T\) batch"):
        generate(model, prompt.view(2, 4, 5), 3)
    with pytest.raises(ValueError, match=r"prompt_ids has token ids outside \[0, 53\)"):
        generate(model, [1, VOCAB], 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        generate(model, [1], 3, temprature=0.5)
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        generate(model, [], 3)
    with pytest.raises(TypeError, match="generate\\(\\) needs a decoder-only model such as GPT"):
        generate(torch.nn.Linear(2, 2), [1], 3)
    assert math.isfinite(generate(model, [1], 3, temperature=0).float().sum().item())
