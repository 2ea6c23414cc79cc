"""Hugging Face GPT-2 weights in and out: our :class:`GPT` ⇄ ``transformers.GPT2LMHeadModel``.

The ``"gpt2"`` preset is GPT-2's architecture, so the two models hold the same numbers under
different names. Three differences need care:

- Hugging Face stores GPT-2's linear layers as ``Conv1D`` modules whose weight is ``(in, out)``,
  the transpose of ``nn.Linear``'s ``(out, in)``;
- its attention computes queries, keys and values with one fused ``c_attn`` of width
  ``3·d_model``; ours has three projections, so the fused matrix is split in three (and joined
  again for export);
- names: ``wte``/``wpe`` are our ``token_embedding``/``position.embedding``, ``ln_1``/``ln_2``
  the norms before attention and MLP, ``c_fc``/``c_proj`` the MLP's ``up``/``down``.

Loading reads ``config.json`` and the weights of a local folder (``model.safetensors``, a
sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` loaded with
``weights_only=True``, which cannot run code) without needing ``transformers``. ``transformers``
is imported only to export a model, to convert one in memory, or to download one from the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from llm_tutorial.models.gpt import GPT, GPTConfig

# our MLP activation -> Hugging Face's activation_function
_ACTIVATION_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
_ACTIVATION_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
# per block: our Linear -> HF's Conv1D (transposed), and our norm -> HF's LayerNorm
_BLOCK_LINEARS = {"attn.out_proj": "attn.c_proj", "mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"}
_BLOCK_NORMS = {"norm_attn": "ln_1", "norm_mlp": "ln_2"}
_TOP_LEVEL = {"token_embedding.weight": "wte.weight", "position.embedding.weight": "wpe.weight",
              "final_norm.weight": "ln_f.weight", "final_norm.bias": "ln_f.bias"}
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def from_hf_gpt2(source: Any) -> GPT:
    """Our GPT (preset ``"gpt2"``) with the weights of a Hugging Face GPT-2, in evaluation mode.

    ``source`` is one of:

    - a local folder (``str`` or ``Path``) holding ``config.json`` and the weights, as written by
      ``save_pretrained`` or downloaded from the hub;
    - a ``transformers.GPT2LMHeadModel`` in memory;
    - a hub name such as ``"gpt2"`` or ``"openai-community/gpt2-medium"`` (needs the internet,
      or Hugging Face's local cache).

    The model is built on the CPU in float32 with ``dropout=0`` (inference); logits equal
    Hugging Face's within float rounding (1e-5).
    """
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        config = _config_from_hf(_read_config(Path(source)))
        state = _read_weights(Path(source))
    else:
        if isinstance(source, (str, Path)):
            source = _download(str(source))
        elif not isinstance(source, _import_transformers("from_hf_gpt2").GPT2LMHeadModel):
            raise TypeError(f"source must be a folder, a hub name or a transformers.GPT2LMHeadModel, "
                            f"got {type(source).__name__}")
        config, state = _config_from_hf(source.config.to_dict()), source.state_dict()
    model = GPT(config)
    model.load_state_dict(_state_from_hf(state, config), strict=True)
    return model.eval()


def to_hf_gpt2(model: GPT) -> Any:
    """A ``transformers.GPT2LMHeadModel`` holding ``model``'s weights, on the same device and
    dtype, in evaluation mode.

    Only GPT-2's architecture can be exported: learned positions, LayerNorm, a GELU or ReLU MLP,
    biases, one key/value head per query head. Anything else (e.g. the ``"llama"`` preset) is a
    ``ValueError`` that lists every difference. No special tokens are set on the result
    (``bos_token_id``/``eos_token_id`` are ``None``): set them if your vocabulary has them."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be an llm_tutorial GPT, got {type(model).__name__}")
    config = model.config
    problems = _gpt2_incompatibilities(config)
    if problems:
        raise ValueError("this GPT cannot be exported as a Hugging Face GPT-2, whose architecture is fixed: "
                         + "; ".join(problems) + ". Use GPTConfig.preset('gpt2', ...) for an exportable model.")
    transformers = _import_transformers("to_hf_gpt2")
    hf_config = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.d_model,
        n_layer=config.n_layer, n_head=config.n_head, n_inner=config.d_ff,
        activation_function=_ACTIVATION_TO_HF[config.mlp], layer_norm_epsilon=config.norm_eps,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        tie_word_embeddings=config.tie_embeddings, bos_token_id=None, eos_token_id=None,
    )
    weight = model.lm_head.weight
    hf = transformers.GPT2LMHeadModel(hf_config).to(device=weight.device, dtype=weight.dtype)
    hf.load_state_dict(_state_to_hf(model.state_dict(), config), strict=True)
    return hf.eval()


def _gpt2_incompatibilities(config: GPTConfig) -> list[str]:
    """Every way ``config`` differs from what a GPT2LMHeadModel can express."""
    wanted = {"position": "learned", "norm": "layernorm", "bias": True}
    problems = [f"{name}={getattr(config, name)!r} (GPT-2 has {value!r})"
                for name, value in wanted.items() if getattr(config, name) != value]
    if config.mlp not in _ACTIVATION_TO_HF:
        problems.append(f"mlp={config.mlp!r} (GPT-2's MLP is one of {', '.join(map(repr, _ACTIVATION_TO_HF))})")
    if config.n_kv_head != config.n_head:
        problems.append(f"n_kv_head={config.n_kv_head} with n_head={config.n_head} (GPT-2 has one key/value head "
                        "per query head)")
    return problems


def _config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """Our GPTConfig from a GPT-2 ``config.json`` (missing keys take GPT2Config's defaults)."""
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"expected a GPT-2 checkpoint (model_type 'gpt2'), got model_type {model_type!r}")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in _ACTIVATION_FROM_HF:
        raise ValueError(f"GPT-2 activation_function {activation!r} has no counterpart here; supported: "
                         f"{', '.join(_ACTIVATION_FROM_HF)}")
    unsupported = {"scale_attn_weights": False, "scale_attn_by_inverse_layer_idx": True, "add_cross_attention": True}
    for name, value in unsupported.items():
        if hf.get(name, not value) == value:
            raise ValueError(f"GPT-2 option {name}={value} changes the attention and is not supported")
    return GPTConfig.preset(
        "gpt2", vocab_size=hf.get("vocab_size", 50257), context_length=hf.get("n_positions", 1024),
        n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), d_model=hf.get("n_embd", 768),
        d_ff=hf.get("n_inner"), mlp=_ACTIVATION_FROM_HF[activation], norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        tie_embeddings=hf.get("tie_word_embeddings", True), dropout=0.0,
    )


def _state_from_hf(hf_state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename, transpose and split a GPT-2 state dict into ours. Keys may carry the
    ``transformer.`` prefix (``save_pretrained``) or not (the original hub files); the causal-mask
    buffers of old checkpoints (``attn.bias``, ``attn.masked_bias``) are ignored."""
    hf = {key.removeprefix("transformer."): value for key, value in hf_state.items()
          if not key.endswith((".attn.bias", ".attn.masked_bias"))}
    ours = {mine: hf.pop(theirs) for mine, theirs in _TOP_LEVEL.items() if theirs in hf}
    lm_head = hf.pop("lm_head.weight", None)
    if not config.tie_embeddings:
        if lm_head is None:
            raise ValueError("the checkpoint has untied embeddings (tie_word_embeddings=False) but no lm_head.weight")
        ours["lm_head.weight"] = lm_head
    for i in range(config.n_layer):
        theirs, mine = f"h.{i}.", f"blocks.{i}."
        q, k, v = hf.pop(theirs + "attn.c_attn.weight").t().chunk(3)  # (3·d, d) -> three (d, d)
        q_bias, k_bias, v_bias = hf.pop(theirs + "attn.c_attn.bias").chunk(3)
        for name, weight, bias in (("q_proj", q, q_bias), ("k_proj", k, k_bias), ("v_proj", v, v_bias)):
            ours[f"{mine}attn.{name}.weight"], ours[f"{mine}attn.{name}.bias"] = weight, bias
        for our_linear, hf_conv in _BLOCK_LINEARS.items():
            ours[f"{mine}{our_linear}.weight"] = hf.pop(f"{theirs}{hf_conv}.weight").t()  # (in, out) -> (out, in)
            ours[f"{mine}{our_linear}.bias"] = hf.pop(f"{theirs}{hf_conv}.bias")
        for our_norm, hf_norm in _BLOCK_NORMS.items():
            for part in ("weight", "bias"):
                ours[f"{mine}{our_norm}.{part}"] = hf.pop(f"{theirs}{hf_norm}.{part}")
    if hf:
        raise ValueError(f"the checkpoint holds weights a GPT-2 language model does not have: {sorted(hf)[:8]}")
    if config.tie_embeddings:
        ours["lm_head.weight"] = ours["token_embedding.weight"]
    return ours


def _state_to_hf(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """The inverse of :func:`_state_from_hf`, with ``save_pretrained``'s key names."""
    hf = {"transformer." + theirs: state[mine] for mine, theirs in _TOP_LEVEL.items()}
    hf["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.n_layer):
        theirs, mine = f"transformer.h.{i}.", f"blocks.{i}."
        projections = [f"{mine}attn.{name}" for name in ("q_proj", "k_proj", "v_proj")]
        hf[theirs + "attn.c_attn.weight"] = torch.cat([state[p + ".weight"] for p in projections]).t()  # (d, 3·d)
        hf[theirs + "attn.c_attn.bias"] = torch.cat([state[p + ".bias"] for p in projections])
        for our_linear, hf_conv in _BLOCK_LINEARS.items():
            hf[f"{theirs}{hf_conv}.weight"] = state[f"{mine}{our_linear}.weight"].t()
            hf[f"{theirs}{hf_conv}.bias"] = state[f"{mine}{our_linear}.bias"]
        for our_norm, hf_norm in _BLOCK_NORMS.items():
            for part in ("weight", "bias"):
                hf[f"{theirs}{hf_norm}.{part}"] = state[f"{mine}{our_norm}.{part}"]
    return hf


def _read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face model folder."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: is it a Hugging Face model folder "
                                "(written by save_pretrained)?")
    return json.loads(config_file.read_text(encoding="utf-8"))


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face model folder: one safetensors file, safetensors shards
    listed in an index, or a ``pytorch_model.bin`` (read with ``weights_only=True``)."""
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    present = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(f"{folder} holds no weights: expected one of {', '.join(_WEIGHT_FILES)}, found {present}")


def _download(name: str) -> Any:
    """A hub model, through ``transformers`` (which caches downloads)."""
    transformers = _import_transformers("from_hf_gpt2 with a hub name")
    try:
        return transformers.GPT2LMHeadModel.from_pretrained(name)
    except OSError as error:
        raise OSError(
            f"{name!r} is not a local folder, and loading it from the Hugging Face hub failed: {error}\n"
            "Offline? On a machine with internet run GPT2LMHeadModel.from_pretrained(name).save_pretrained(folder), "
            "copy the folder here, and pass its path."
        ) from error


def _import_transformers(purpose: str) -> Any:
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"{purpose} needs Hugging Face transformers: pip install transformers") from error
    return transformers
