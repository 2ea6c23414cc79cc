"""Hugging Face GPT-2 weights in and out, on randomly initialised models (nothing is
downloaded): logits equal within 1e-5 both ways, through memory and through folders in every
format save_pretrained writes, exact round trips, and clear errors for what GPT-2 cannot hold."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from llm_tutorial.interop import from_hf_gpt2, to_hf_gpt2
from llm_tutorial.models import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

VOCAB, CONTEXT = 97, 23


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _ours(**overrides) -> GPT:
    """A GPT-2-preset model of odd sizes whose every weight (biases, norm gains too) is perturbed."""
    config = GPTConfig.preset("gpt2", **{**dict(vocab_size=VOCAB, context_length=CONTEXT, n_layer=3, n_head=3,
                                                d_model=24), **overrides})
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _hf(**overrides) -> torch.nn.Module:
    config = transformers.GPT2Config(**{**dict(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=24, n_layer=3, n_head=3,
                                               bos_token_id=0, eos_token_id=0), **overrides})
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _max_logit_error(ours: GPT, hf: torch.nn.Module) -> float:
    idx = torch.randint(0, VOCAB, (3, CONTEXT))
    with torch.no_grad():
        return (ours(idx) - hf(idx).logits).abs().max().item()


@pytest.mark.parametrize("overrides", [{}, dict(mlp="gelu", d_ff=40, tie_embeddings=False), dict(mlp="relu")])
def test_export_gives_hugging_face_the_same_logits(overrides):
    ours = _ours(**overrides)
    hf = to_hf_gpt2(ours)
    assert isinstance(hf, transformers.GPT2LMHeadModel) and not hf.training
    error = _max_logit_error(ours, hf)
    print(f"ours -> HF {overrides}: max |logits - HF| = {error:.2e}")
    assert error < 1e-5
    assert hf.num_parameters() == ours.num_parameters()
    assert (hf.lm_head.weight is hf.transformer.wte.weight) == ours.config.tie_embeddings


@pytest.mark.parametrize("overrides", [{}, dict(activation_function="gelu_pytorch_tanh", n_inner=40),
                                       dict(activation_function="relu", tie_word_embeddings=False)])
def test_import_gives_our_model_the_same_logits(overrides):
    hf = _hf(**overrides)
    ours = from_hf_gpt2(hf)
    assert isinstance(ours, GPT) and not ours.training and ours.config.dropout == 0.0
    error = _max_logit_error(ours, hf)
    print(f"HF -> ours {overrides}: max |logits - HF| = {error:.2e}")
    assert error < 1e-5
    assert ours.num_parameters() == hf.num_parameters()


@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin"])
def test_loading_from_a_folder(tmp_path, layout):
    hf = _hf()
    if layout == "bin":  # the older format: a pickled state dict, read back with weights_only=True
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    else:
        hf.save_pretrained(tmp_path, max_shard_size="40KB" if layout == "sharded" else "50GB")
    assert (tmp_path / "model.safetensors.index.json").is_file() == (layout == "sharded")
    ours = from_hf_gpt2(tmp_path)
    assert _max_logit_error(ours, hf) < 1e-5
    assert _max_logit_error(from_hf_gpt2(str(tmp_path)), hf) < 1e-5


def test_original_hub_key_names_are_understood(tmp_path):
    """The hub's own gpt2 files name keys without "transformer." and keep causal-mask buffers."""
    from safetensors.torch import save_file

    hf = _hf()
    state = {key.removeprefix("transformer."): value.contiguous() for key, value in hf.state_dict().items()
             if key != "lm_head.weight"}
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, CONTEXT, CONTEXT))
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": VOCAB, "n_positions": CONTEXT,
                                                      "n_embd": 24, "n_layer": 3, "n_head": 3}))
    assert _max_logit_error(from_hf_gpt2(tmp_path), hf) < 1e-5


def test_round_trips_are_exact(tmp_path):
    ours = _ours()
    back = from_hf_gpt2(to_hf_gpt2(ours))
    assert back.config == ours.config
    for (name, mine), (_, theirs) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert torch.equal(mine, theirs), name
    to_hf_gpt2(ours).save_pretrained(tmp_path)
    idx = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(from_hf_gpt2(tmp_path)(idx), ours(idx))


def test_incompatible_models_are_refused_with_every_reason():
    llama = GPT(GPTConfig.preset("llama", vocab_size=VOCAB, context_length=CONTEXT, n_layer=1, n_head=4, n_kv_head=2,
                                 d_model=24))
    with pytest.raises(ValueError, match="cannot be exported as a Hugging Face GPT-2") as error:
        to_hf_gpt2(llama)
    for reason in ("position='rope'", "norm='rmsnorm'", "bias=False", "mlp='swiglu'", "n_kv_head=2 with n_head=4"):
        assert reason in str(error.value)
    with pytest.raises(ValueError, match="n_kv_head=1 with n_head=3"):
        to_hf_gpt2(_ours(n_kv_head=1))
    with pytest.raises(TypeError, match="model must be an llm_tutorial GPT"):
        to_hf_gpt2(_hf())


def test_bad_sources(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        from_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(FileNotFoundError, match="holds no weights: expected one of model.safetensors"):
        from_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="expected a GPT-2 checkpoint"):
        from_hf_gpt2(tmp_path)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True .* not supported"):
        from_hf_gpt2(_hf(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(TypeError, match="source must be a folder, a hub name or a transformers.GPT2LMHeadModel"):
        from_hf_gpt2(torch.nn.Linear(2, 2))

    def offline(name, *args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.GPT2LMHeadModel, "from_pretrained", offline)
    with pytest.raises(OSError, match="'gpt2' is not a local folder, and loading it from the Hugging Face hub failed"):
        from_hf_gpt2("gpt2")


def test_importing_the_package_does_not_import_transformers():
    code = ("import sys, llm_tutorial, llm_tutorial.interop, llm_tutorial.generate; "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
