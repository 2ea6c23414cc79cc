"""Inputs that used to give a silent wrong result or a crash deep in torch, each now a clear error
naming what was wrong, or a documented, correct result: prompts, temperatures, non-finite logits,
perplexity overflow, float data, unreadable tokenizer and corpus files, the range-check opt-outs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial.data import data_path, encode_corpus, get_batch
from llm_tutorial.generate import generate, stream
from llm_tutorial.generate.processors import apply_repetition_penalty, apply_temperature, process_logits
from llm_tutorial.losses import clm_loss, cross_entropy, perplexity
from llm_tutorial.models import GPT, GPTConfig
from llm_tutorial.tokenizers import ByteLevelBPE, CharTokenizer
from llm_tutorial.train.objectives import causal_lm_loss
from llm_tutorial.train.launch import read_corpus

VOCAB = 19


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("gpt2", vocab_size=VOCAB, n_layer=1, n_head=2, d_model=8, context_length=16))


# ------------------------------------------------------------------------------------ generation
@pytest.mark.parametrize("prompt, error, match", [
    (torch.empty(0, dtype=torch.long), ValueError, r"at least one token per sequence, got shape \(0,\)"),
    (torch.empty(2, 0, dtype=torch.long), ValueError, r"at least one token per sequence, got shape \(2, 0\)"),
    (torch.empty(0, 3, dtype=torch.long), ValueError, r"at least one token per sequence, got shape \(0, 3\)"),
    ([1.5, 2.0], TypeError, r"list of int token ids, got 1.5 \(float\)"),
    ([1, 2.0], TypeError, r"got 2.0 \(float\)"),
    ([True, 2], TypeError, r"got True \(bool\)"),
    ([1, "2"], TypeError, r"got '2' \(str\)"),
    (torch.tensor([1.5, 2.0]), TypeError, "must hold integer token ids"),
    (torch.tensor([1, VOCAB]), ValueError, rf"outside \[0, {VOCAB}\)"),
    ([], ValueError, "prompt_ids is empty"),
])
def test_bad_prompts_are_refused_before_any_work(prompt, error, match):
    with pytest.raises(error, match=match):
        generate(tiny_gpt(), prompt, 3)
    with pytest.raises(error, match=match):
        stream(tiny_gpt(), prompt, 3)


@pytest.mark.parametrize("options, match", [
    (dict(temperature=math.inf), "temperature must be a finite number"),
    (dict(temperature=-math.inf), "temperature must be a finite number"),
    (dict(temperature=math.nan), "temperature must be a finite number"),
    (dict(temperature=1e308 * 10), "temperature must be a finite number"),
    (dict(repetition_penalty=math.inf), "repetition_penalty must be a positive number, got inf"),
    (dict(repetition_penalty=math.nan), "repetition_penalty must be a positive number"),
    (dict(top_p=math.nan), "top_p must be a probability"),
])
def test_non_finite_sampling_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_gpt(), [1, 2], 3, **options)


def test_the_processors_refuse_an_infinite_temperature_or_penalty_too():
    logits = torch.randn(2, VOCAB)
    with pytest.raises(ValueError, match="temperature must be a positive number, got inf"):
        apply_temperature(logits, math.inf)
    with pytest.raises(ValueError, match="temperature must be a positive number, got inf"):
        process_logits(logits, temperature=math.inf)
    with pytest.raises(ValueError, match="repetition_penalty must be a positive number, got inf"):
        apply_repetition_penalty(logits, torch.zeros(2, 1, dtype=torch.long), math.inf)


def test_a_large_finite_temperature_still_samples_nearly_uniformly():
    counts = torch.bincount(generate(tiny_gpt(), [1], 15, temperature=1e6, generator=torch.Generator().manual_seed(0))[1:],
                            minlength=VOCAB)
    assert counts.max() <= 4, "1e6 flattens the distribution: no token dominates"


# ------------------------------------------------------------------------------------------ losses
def reference_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p_y from the probabilities themselves, in float64: 0 probability → +inf."""
    probs = torch.softmax(logits.double(), dim=-1)
    return -torch.log(probs.gather(-1, targets[:, None]).squeeze(-1))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_minus_inf_at_the_target_is_an_infinite_loss_not_nan(label_smoothing):
    logits = torch.randn(3, VOCAB)
    targets = torch.tensor([2, 5, 7])
    logits[1, 5] = -math.inf  # the target of row 1 has probability exactly 0
    per_position = cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    assert per_position[1] == math.inf and torch.isfinite(per_position[[0, 2]]).all()
    assert cross_entropy(logits, targets, label_smoothing=label_smoothing) == math.inf
    if label_smoothing == 0:
        assert torch.allclose(per_position[[0, 2]].double(), reference_nll(logits, targets)[[0, 2]], atol=1e-5)


@pytest.mark.parametrize("where", ["target", "other"])
def test_a_plus_inf_logit_is_an_infinite_loss_not_nan(where):
    logits = torch.randn(2, VOCAB)
    targets = torch.tensor([3, 4])
    logits[0, 3 if where == "target" else 9] = math.inf
    per_position = cross_entropy(logits, targets, reduction="none")
    assert per_position[0] == math.inf and torch.isfinite(per_position[1])
    assert not torch.isnan(cross_entropy(logits, targets))


def test_a_nan_logit_stays_nan_and_ignored_positions_stay_out():
    logits = torch.randn(2, VOCAB)
    logits[0, 1] = math.nan
    assert torch.isnan(cross_entropy(logits, torch.tensor([3, 4])))
    assert torch.isfinite(cross_entropy(logits, torch.tensor([-100, 4])))


def test_finite_losses_still_equal_torch():
    logits, targets = torch.randn(4, 7, VOCAB), torch.randint(0, VOCAB, (4, 7))
    targets[0, :3] = -100
    assert torch.allclose(clm_loss(logits, targets), F.cross_entropy(logits.flatten(0, 1), targets.flatten()), atol=1e-6)
    assert torch.allclose(clm_loss(logits, targets, check_range=False), clm_loss(logits, targets))


@pytest.mark.parametrize("bad_id", [VOCAB, VOCAB + 100, -1, -99])
def test_with_the_range_check_off_an_out_of_range_label_names_the_opt_out(bad_id):
    logits, targets = torch.randn(2, 5, VOCAB), torch.randint(0, VOCAB, (2, 5))
    targets[1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"targets must hold ids in \[0, {VOCAB}\)"):
        clm_loss(logits, targets)
    with pytest.raises(ValueError, match=r"the range check was off: check_range=False"):
        clm_loss(logits, targets, check_range=False)


@pytest.mark.parametrize("bad_id", [VOCAB, 1000, -1])
def test_with_check_token_range_off_an_out_of_range_id_names_the_opt_out(bad_id):
    model = tiny_gpt()
    model.check_token_range = False
    idx = torch.randint(0, VOCAB, (2, 6))
    idx[0, 3] = bad_id
    with pytest.raises(ValueError, match="check_token_range is False, so it was not checked"):
        model(idx)
    with pytest.raises(ValueError, match="check_token_range is False"):
        causal_lm_loss(model, (idx, torch.randint(0, VOCAB, (2, 6))))
    model.check_token_range = True
    with pytest.raises(ValueError, match=rf"idx has token ids outside \[0, {VOCAB}\)"):
        model(idx)


def test_the_objective_follows_the_models_range_switch():
    model = tiny_gpt()
    x, y = torch.randint(0, VOCAB, (2, 6)), torch.randint(0, VOCAB, (2, 6))
    y[1, 1] = VOCAB + 3
    with pytest.raises(ValueError, match=r"targets must hold ids in \[0, 19\)"):
        causal_lm_loss(model, (x, y))
    model.check_token_range = False
    with pytest.raises(ValueError, match="the range check was off"):
        causal_lm_loss(model, (x, y))


@pytest.mark.parametrize("mean_nll, expected", [
    (1000, math.inf), (709.0, math.exp(709.0)), (710.0, math.inf), (1e308, math.inf), (math.inf, math.inf),
    (0, 1.0), (math.log(50257), 50257.0),
])
def test_perplexity_overflows_to_infinity_like_torch(mean_nll, expected):
    assert perplexity(mean_nll) == pytest.approx(expected)
    assert perplexity(torch.tensor(float(mean_nll), dtype=torch.float64)).item() == pytest.approx(expected)


@pytest.mark.parametrize("bad", [math.nan, -1e-9, -math.inf])
def test_perplexity_refuses_nan_and_negative(bad):
    with pytest.raises(ValueError, match="negative log-likelihood"):
        perplexity(bad)
    with pytest.raises(ValueError, match="negative log-likelihood"):
        perplexity(torch.tensor([1.0, bad]))


# -------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bool, torch.complex64])
def test_get_batch_refuses_data_that_is_not_token_ids(dtype):
    data = torch.arange(40).to(dtype)
    with pytest.raises(TypeError, match="data must hold integer token ids"):
        get_batch(data, 2, 4)


def test_get_batch_takes_every_integer_width():
    for dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        x, y = get_batch(torch.arange(40).to(dtype), 2, 4, torch.Generator().manual_seed(0))
        assert torch.equal(y[:, :-1], x[:, 1:])
    with pytest.raises(ValueError, match=r"ids has token ids outside \[0, 5\)"):
        encode_corpus([0, 1, 7], 5)


# ------------------------------------------------------------------------------ files that name themselves
@pytest.mark.parametrize("content, match", [
    (b'{"format": "llm_tutorial.char_tokenizer", ', r"is not valid JSON \(line 1, column \d+"),
    (b"", "is not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
    (b"[1, 2, 3]", "is not a llm_tutorial"),
])
def test_a_bad_tokenizer_file_names_itself(tmp_path, content, match):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    for load in (CharTokenizer.load, ByteLevelBPE.load):
        with pytest.raises(ValueError, match=match) as error:
            load(path)
        assert str(path) in str(error.value)


def test_swapped_or_broken_gpt2_files_name_the_file(tmp_path):
    vocab, merges = data_path("gpt2-vocab"), data_path("gpt2-merges")
    with pytest.raises(ValueError, match=rf"{merges} is not valid JSON .*vocab.json comes first, merges.txt second"):
        ByteLevelBPE.from_gpt2_files(merges, vocab)
    with pytest.raises(ValueError, match=rf"{vocab}: merge line 1 .*were they swapped"):
        ByteLevelBPE.from_gpt2_files(vocab, vocab)
    bad_ids = tmp_path / "vocab.json"
    bad_ids.write_text(json.dumps({"a": "0", "b": 1}))
    with pytest.raises(ValueError, match=rf"{bad_ids} must hold a JSON object mapping each token to its integer id"):
        ByteLevelBPE.from_gpt2_files(bad_ids, merges)
    binary = tmp_path / "merges.txt"
    binary.write_bytes(b"\xff" * 10)
    with pytest.raises(ValueError, match=rf"{binary} is not UTF-8 text .*GPT-2's merges.txt"):
        ByteLevelBPE.from_gpt2_files(vocab, binary)
    with pytest.raises(FileNotFoundError, match="no GPT-2's vocab.json"):
        ByteLevelBPE.from_gpt2_files(tmp_path / "nowhere.json", merges)


@pytest.mark.parametrize("content", [b"\xff\xfe\xfa", bytes(range(256)), "caf\xe9".encode("latin-1")])
def test_a_binary_corpus_names_the_file(tmp_path, content):
    path = tmp_path / "corpus.dat"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"data.corpus {path} is not UTF-8 text \(byte \d+ cannot be decoded\)"):
        read_corpus(str(path))
