"""The GPT model: its configuration, its parity with Hugging Face's GPT-2 and Llama built from
configs with the same random weights (nothing is downloaded), the KV cache, and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_tutorial.interop import from_hf_gpt2
from llm_tutorial.models import GPT, GPTConfig
from llm_tutorial.nn import KVCache

transformers = pytest.importorskip("transformers")

VOCAB, CONTEXT = 97, 23


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise(model: torch.nn.Module) -> None:
    """Random weights everywhere (norm gains around 1, biases non-zero), so that no default
    value such as a zero bias can hide a mapping mistake."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_gain = p.ndim == 1 and ("ln" in name or "norm" in name) and name.endswith("weight")
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if is_gain else 0.1 * torch.randn_like(p))


# ---------------------------------------------------------------- GPT-2 parity


def _hf_gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=CONTEXT, n_embd=24, n_layer=3, n_head=3, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager",
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    _randomise(model)
    return model


def test_gpt2_preset_matches_hugging_face_gpt2():
    hf = _hf_gpt2()
    ours = from_hf_gpt2(hf)  # the mapping lives in llm_tutorial.interop
    idx = torch.randint(0, VOCAB, (3, CONTEXT))
    with torch.no_grad():
        expected = hf(idx, output_hidden_states=True, output_attentions=True)
        logits = ours(idx)
        hidden = ours.hidden_states(idx, all_layers=True)
        maps = ours.attention_maps(idx)
    error = (logits - expected.logits).abs().max().item()
    print(f"gpt2 parity: max |logits - HF| = {error:.2e}")
    assert error < 1e-5
    assert len(hidden) == len(expected.hidden_states) == 4
    for mine, theirs in zip(hidden, expected.hidden_states):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(maps, expected.attentions):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert ours.lm_head.weight is ours.token_embedding.weight
    assert ours.num_parameters() == hf.num_parameters()
    assert ours.num_parameters(non_embedding=True) == hf.num_parameters() - (VOCAB + CONTEXT) * 24


# ---------------------------------------------------------------- Llama parity


def _hf_llama(rope_theta: float) -> torch.nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=CONTEXT, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta}, attn_implementation="eager",
    )
    model = transformers.LlamaForCausalLM(config).eval()
    _randomise(model)
    return model


def _rotate_half_to_interleaved(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF's Llama rotates coordinate i with i + D/2 ("rotate half"); ours rotates (2i, 2i+1).
    Reordering each head's output rows, ours[2i] = hf[i] and ours[2i+1] = hf[i + D/2], makes the
    same pairs rotate by the same angles; queries and keys are permuted alike, so q·k is unchanged."""
    head_dim = weight.size(0) // n_heads
    order = [i // 2 + (i % 2) * (head_dim // 2) for i in range(head_dim)]
    return weight.view(n_heads, head_dim, -1)[:, order].reshape_as(weight)


def _llama_from_hf(hf: torch.nn.Module) -> GPT:
    c = hf.config
    ours = GPT(GPTConfig.preset(
        "llama", vocab_size=c.vocab_size, context_length=c.max_position_embeddings, n_layer=c.num_hidden_layers,
        n_head=c.num_attention_heads, n_kv_head=c.num_key_value_heads, d_model=c.hidden_size, d_ff=c.intermediate_size,
        norm_eps=c.rms_norm_eps, rope_base=c.rope_parameters["rope_theta"],
    )).eval()
    sd = hf.state_dict()
    mapped = {"token_embedding.weight": sd["model.embed_tokens.weight"], "final_norm.weight": sd["model.norm.weight"],
              "lm_head.weight": sd["lm_head.weight"]}
    for i in range(c.num_hidden_layers):
        hf_block, block = f"model.layers.{i}.", f"blocks.{i}."
        q_weight, k_weight = sd[hf_block + "self_attn.q_proj.weight"], sd[hf_block + "self_attn.k_proj.weight"]
        mapped.update({
            block + "attn.q_proj.weight": _rotate_half_to_interleaved(q_weight, c.num_attention_heads),
            block + "attn.k_proj.weight": _rotate_half_to_interleaved(k_weight, c.num_key_value_heads),
            block + "attn.v_proj.weight": sd[hf_block + "self_attn.v_proj.weight"],
            block + "attn.out_proj.weight": sd[hf_block + "self_attn.o_proj.weight"],
            block + "mlp.gate.weight": sd[hf_block + "mlp.gate_proj.weight"],
            block + "mlp.up.weight": sd[hf_block + "mlp.up_proj.weight"],
            block + "mlp.down.weight": sd[hf_block + "mlp.down_proj.weight"],
            block + "norm_attn.weight": sd[hf_block + "input_layernorm.weight"],
            block + "norm_mlp.weight": sd[hf_block + "post_attention_layernorm.weight"],
        })
    ours.load_state_dict(mapped, strict=True)
    return ours


@pytest.mark.parametrize("rope_theta", [10000.0, 500.0])
def test_llama_preset_matches_hugging_face_llama(rope_theta):
    hf = _hf_llama(rope_theta)
    ours = _llama_from_hf(hf)
    idx = torch.randint(0, VOCAB, (2, CONTEXT))
    with torch.no_grad():
        expected = hf(idx).logits
        logits = ours(idx)
    error = (logits - expected).abs().max().item()
    print(f"llama parity (rope_theta={rope_theta}): max |logits - HF| = {error:.2e}")
    assert error < 1e-5
    assert ours.config.n_kv_head < ours.config.n_head and ours.blocks[0].attn.q_proj.bias is None
    assert ours.num_parameters() == hf.num_parameters()


# ---------------------------------------------------------------- KV cache


def _tiny(preset: str, **overrides) -> GPT:
    sizes = dict(vocab_size=VOCAB, context_length=CONTEXT, n_layer=2, n_head=4, d_model=24)
    if preset == "llama":
        sizes["n_kv_head"] = 2
    model = GPT(GPTConfig.preset(preset, **{**sizes, **overrides})).eval()
    _randomise(model)
    return model


@pytest.mark.parametrize("preset,impl", [("gpt2", "sdpa"), ("llama", "sdpa"), ("llama", "explicit")])
def test_cached_decoding_gives_the_logits_of_a_full_pass(preset, impl):
    model = _tiny(preset, attention_impl=impl)
    idx = torch.randint(0, VOCAB, (3, 11))
    with torch.no_grad():
        full = model(idx)
        for splits in ([1], [5], [3, 4, 9], list(range(1, 11))):
            cache = model.new_cache(3, max_len=11)
            bounds = [0, *splits, 11]
            pieces = [model(idx[:, a:b], cache=cache) for a, b in zip(bounds, bounds[1:])]
            torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
            assert cache.length == 11
        with pytest.raises(ValueError, match="KV cache is full: it holds 11 of 11 positions"):
            model(idx[:, :1], cache=cache)


def test_cache_size_follows_grouped_query_heads():
    model = _tiny("llama")
    cache = model.new_cache(2)
    assert isinstance(cache, KVCache) and cache.max_len == CONTEXT
    assert cache[0].keys.shape == (2, 2, CONTEXT, 6)  # (B, n_kv_head, max_len, head_dim)
    assert cache.nbytes == 2 * 2 * (2 * 2 * CONTEXT * 6) * 4


# ---------------------------------------------------------------- config, init


def test_presets_and_json_round_trip():
    gpt2, llama = GPTConfig.preset("gpt2"), GPTConfig.preset("llama", n_layer=4)
    def choices(c: GPTConfig) -> tuple:
        return c.position, c.norm, c.mlp, c.bias, c.tie_embeddings

    assert choices(gpt2) == ("learned", "layernorm", "gelu_tanh", True, True)
    assert choices(llama) == ("rope", "rmsnorm", "swiglu", False, False)
    assert llama.n_kv_head < llama.n_head and llama.n_layer == 4
    assert gpt2 == GPTConfig() and gpt2.d_ff == 4 * gpt2.d_model and gpt2.n_kv_head == gpt2.n_head
    assert GPTConfig.from_dict(json.loads(json.dumps(llama.to_dict()))) == llama


def test_gpt2_small_has_its_published_parameter_count():
    with torch.device("meta"):  # count without allocating 124M numbers
        model = GPT(GPTConfig.preset("gpt2"))
    assert model.num_parameters() == 124_439_808


def test_initialisation_scales_residual_projections_by_depth():
    config = GPTConfig.preset("gpt2", vocab_size=300, context_length=64, n_layer=8, n_head=4, d_model=128)
    model = GPT(config)
    assert abs(model.blocks[0].attn.q_proj.weight.std().item() - 0.02) < 0.002
    residual_std = 0.02 / math.sqrt(2 * 8)
    for name in ("attn.out_proj", "mlp.down"):
        weight = model.blocks[3].get_submodule(name).weight
        assert abs(weight.std().item() - residual_std) < 0.1 * residual_std
    assert torch.equal(model.blocks[0].mlp.up.bias, torch.zeros(4 * 128))
    assert torch.equal(model.final_norm.weight, torch.ones(128))


def test_sinusoidal_positions_and_skipping_the_token_range_check():
    model = _tiny("gpt2", position="sinusoidal")
    assert model.num_parameters(non_embedding=True) == model.num_parameters() - VOCAB * 24
    idx = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        checked = model(idx)
        model.check_token_range = False
        torch.testing.assert_close(model(idx), checked, rtol=0, atol=0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(n_head=5, d_model=24), ValueError, "n_head=5 must divide d_model=24"),
        (dict(n_head=6, n_kv_head=4, d_model=24), ValueError, "n_kv_head=4 must divide n_head=6"),
        (dict(n_layer=0), ValueError, "n_layer must be a positive integer"),
        (dict(norm="batchnorm"), ValueError, "unknown norm 'batchnorm'"),
        (dict(mlp="geglu"), ValueError, "unknown mlp 'geglu'"),
        (dict(position="alibi"), ValueError, "unknown position 'alibi'"),
        (dict(attention_impl="flash"), ValueError, "unknown attention_impl 'flash'"),
        (dict(dropout=1.5), ValueError, "dropout must be a probability"),
        (dict(bias="yes"), TypeError, "bias must be True or False"),
        (dict(norm_eps=0), ValueError, "norm_eps must be a positive number"),
        (dict(norm_eps=float("nan")), ValueError, "norm_eps must be a positive number, got nan"),  # all logits NaN
        (dict(norm_eps=float("inf")), ValueError, "norm_eps must be a positive number, got inf"),
        (dict(norm_eps=True), ValueError, "norm_eps must be a positive number, got True"),
        (dict(rope_base=float("inf")), ValueError, r"rope_base must be a number > 1 \(10000 in the papers\), got inf"),
        (dict(rope_base=float("nan")), ValueError, "rope_base must be a number > 1"),
        (dict(rope_base=1.0), ValueError, "rope_base must be a number > 1"),
        (dict(tie_embeddings=1), TypeError, "tie_embeddings must be True or False"),
        (dict(position="rope", n_head=4, d_model=12), ValueError, "head_dim = d_model / n_head must be even"),
    ],
)
def test_bad_configs(kwargs, error, match):
    with pytest.raises(error, match=match):
        GPTConfig(**kwargs)


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="unknown preset 'gpt5'; choose one of 'gpt2', 'llama'"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match=r"unknown GPTConfig field\(s\) \['n_embd'\]"):
        GPTConfig.preset("gpt2", n_embd=128)
    with pytest.raises(ValueError, match=r"unknown GPTConfig field\(s\) \['block_size'\]"):
        GPTConfig.from_dict({"block_size": 64})
    for not_a_dict in (None, [("n_layer", 2)], "gpt2"):
        with pytest.raises(TypeError, match="GPTConfig.from_dict takes a dict of GPTConfig fields"):
            GPTConfig.from_dict(not_a_dict)
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        GPT({"n_layer": 2})


def test_bad_forward_inputs():
    model = _tiny("gpt2")
    with pytest.raises(ValueError, match=r"idx must have 2 dimensions \(B, T\) token ids"):
        model(torch.randint(0, VOCAB, (7,)))
    with pytest.raises(TypeError, match="idx must hold integer token ids"):
        model(torch.rand(2, 7))
    with pytest.raises(ValueError, match=r"token ids outside \[0, 97\): min 0, max 97"):
        model(torch.tensor([[0, 97]]))
    with pytest.raises(ValueError, match="sequence of 24 tokens .* longer than the context length 23"):
        model(torch.zeros(1, CONTEXT + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx has no tokens \(T = 0\)"):
        model(torch.zeros(1, 0, dtype=torch.long))


def test_bad_cache_use():
    model = _tiny("llama")
    cache = model.new_cache(2, max_len=8)
    with pytest.raises(ValueError, match="cache was made for batch size 2, got idx with batch size 3"):
        model(torch.zeros(3, 4, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="cannot take 9 more"):
        model(torch.zeros(2, 9, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="cache has 1 layers but the model has 2"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=KVCache(1, 2, 2, 8, 6))
    with pytest.raises(TypeError, match="cache must be a KVCache"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=[])
    with pytest.raises(ValueError, match="max_len 24 exceeds the model's context length 23"):
        model.new_cache(2, max_len=24)
    full_context = model.new_cache(1)
    with torch.no_grad():
        model(torch.zeros(1, CONTEXT - 2, dtype=torch.long), cache=full_context)
    with pytest.raises(ValueError, match=r"sequence of 24 tokens \(21 cached \+ 3 new\)"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=full_context)
