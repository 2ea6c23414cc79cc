"""BERT against Hugging Face's BertForPreTraining with the same random weights; masks; bad input."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from llm_tutorial.data.pretraining_examples import mask_tokens, nsp_batch, sample_nsp_pairs
from llm_tutorial.losses import mlm_loss, nsp_loss
from llm_tutorial.models.bert import Bert, BertConfig, BertEncoder

PAD, CLS, SEP, MASK = 0, 1, 2, 3


def tiny_config(**overrides: object) -> BertConfig:
    sizes = dict(vocab_size=97, d_model=48, n_head=4, n_layer=2, d_ff=80, max_len=40, type_vocab_size=3, dropout=0.0)
    sizes.update(overrides)
    return BertConfig(**sizes)


def hf_config(config: BertConfig):
    return transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, intermediate_size=config.d_ff, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=config.max_len,
        type_vocab_size=config.type_vocab_size, layer_norm_eps=config.norm_eps, pad_token_id=config.pad_id,
    )


def load_into_hugging_face(reference, state: dict[str, torch.Tensor], model, dtype: torch.dtype) -> None:
    """Copy our weights ``state`` into the Hugging Face ``reference``, check that nothing but its
    position/token-type buffers was left unset, and cast both models to ``dtype``."""
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]
    model.to(dtype), reference.to(dtype)


def hf_encoder_names(n_layer: int, theirs: str = "bert.", ours: str = "encoder.") -> dict[str, str]:
    """Hugging Face's names of a BERT-style encoder's parameters (also ELECTRA's) -> ours."""
    names = {
        f"{theirs}embeddings.word_embeddings.weight": f"{ours}embeddings.token.weight",
        f"{theirs}embeddings.position_embeddings.weight": f"{ours}embeddings.position.embedding.weight",
        f"{theirs}embeddings.token_type_embeddings.weight": f"{ours}embeddings.token_type.weight",
        f"{theirs}embeddings.LayerNorm.weight": f"{ours}embeddings.norm.weight",
        f"{theirs}embeddings.LayerNorm.bias": f"{ours}embeddings.norm.bias",
    }
    per_layer = {
        "attention.self.query": "attn.q_proj",
        "attention.self.key": "attn.k_proj",
        "attention.self.value": "attn.v_proj",
        "attention.output.dense": "attn.out_proj",
        "attention.output.LayerNorm": "norm_attn",
        "intermediate.dense": "mlp.up",
        "output.dense": "mlp.down",
        "output.LayerNorm": "norm_mlp",
    }
    for i in range(n_layer):
        for their_name, our_name in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"{theirs}encoder.layer.{i}.{their_name}.{kind}"] = f"{ours}blocks.{i}.{our_name}.{kind}"
    return names


def hf_state_dict(model: Bert) -> dict[str, torch.Tensor]:
    """Our parameters under Hugging Face's names (``BertForPreTraining``)."""
    names = hf_encoder_names(model.config.n_layer) | {
        "bert.pooler.dense.weight": "pooler.dense.weight",
        "bert.pooler.dense.bias": "pooler.dense.bias",
        "cls.predictions.transform.dense.weight": "mlm_head.dense.weight",
        "cls.predictions.transform.dense.bias": "mlm_head.dense.bias",
        "cls.predictions.transform.LayerNorm.weight": "mlm_head.norm.weight",
        "cls.predictions.transform.LayerNorm.bias": "mlm_head.norm.bias",
        "cls.predictions.decoder.weight": "mlm_head.decoder.weight",
        "cls.predictions.decoder.bias": "mlm_head.decoder.bias",
        "cls.predictions.bias": "mlm_head.decoder.bias",
        "cls.seq_relationship.weight": "nsp_head.weight",
        "cls.seq_relationship.bias": "nsp_head.bias",
    }
    ours = model.state_dict()
    return {theirs: ours[mine] for theirs, mine in names.items()}


def randomise_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Fresh random values in every parameter (biases and norm gains too), so that no part can
    hide behind an initial value of 0 or 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(gain + 0.2 * torch.randn(p.shape, generator=gen))


def padded_pair_batch(gen: torch.Generator, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(4, vocab_size, (3, 17), generator=gen)
    types = torch.zeros_like(ids)
    types[:, 9:] = 1
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 12:], mask[2, 6:] = False, False
    ids[~mask] = PAD
    types[~mask] = 0
    types[0, 15:] = 2  # a third segment type, to exercise type_vocab_size=3
    return ids, types, mask


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_hugging_face_bert_for_pretraining(dtype: torch.dtype, tolerance: float) -> None:
    gen = torch.Generator().manual_seed(0)
    config = tiny_config()
    model = Bert(config).eval()
    randomise_(model, gen)
    reference = transformers.BertForPreTraining(hf_config(config)).eval()
    load_into_hugging_face(reference, hf_state_dict(model), model, dtype)

    ids, types, mask = padded_pair_batch(gen, config.vocab_size)
    with torch.no_grad():
        ours = model(ids, types, mask)
        theirs = reference(input_ids=ids, token_type_ids=types, attention_mask=mask.long())
    mlm_error = (ours.mlm_logits - theirs.prediction_logits)[mask].abs().max().item()
    nsp_error = (ours.nsp_logits - theirs.seq_relationship_logits).abs().max().item()
    print(f"BERT vs HF BertForPreTraining ({dtype}): max |Δ| MLM logits {mlm_error:.2e}, NSP logits {nsp_error:.2e}")
    assert mlm_error < tolerance and nsp_error < tolerance


@torch.no_grad()
def test_padding_does_not_change_real_positions() -> None:
    torch.manual_seed(1)
    model = Bert(tiny_config()).eval()
    ids = torch.randint(4, 97, (1, 9))
    alone = model(ids)
    padded = model(torch.cat([ids, torch.full((1, 6), PAD)], dim=1))
    torch.testing.assert_close(padded.mlm_logits[:, :9], alone.mlm_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.nsp_logits, alone.nsp_logits, rtol=1e-5, atol=1e-5)


def test_mlm_head_is_tied_and_parameters_are_counted() -> None:
    config = tiny_config()
    model = Bert(config)
    assert model.mlm_head.decoder.weight is model.encoder.embeddings.token.weight
    v, d, f, t, p = config.vocab_size, config.d_model, config.d_ff, config.type_vocab_size, config.max_len
    block = 4 * (d * d + d) + (d * f + f + f * d + d) + 2 * 2 * d
    embeddings = (v + p + t) * d + 2 * d
    heads = (d * d + d) + (d * d + d + 2 * d + v) + (2 * d + 2)  # pooler, MLM transform + bias, NSP
    assert model.num_parameters() == embeddings + config.n_layer * block + heads
    assert model.num_parameters(non_embedding=True) == 2 * d + config.n_layer * block + heads
    assert BertConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_pretraining_step_on_objective_examples_reduces_the_loss(one_thread: None) -> None:
    """MLM + NSP batches from ``llm_tutorial.data.pretraining_examples`` train the model end to end."""
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    model = Bert(tiny_config(vocab_size=30))
    lengths = torch.randint(3, 9, (17,), generator=gen)
    segments = [torch.randint(4, 30, (int(n),), generator=gen).tolist() for n in lengths]
    batch = nsp_batch(sample_nsp_pairs(segments, generator=gen), cls_id=CLS, sep_id=SEP, pad_id=PAD, max_length=20)
    masked, labels = mask_tokens(
        batch.input_ids, mask_id=MASK, vocab_size=30, special_ids=[PAD, CLS, SEP], generator=gen
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = model(masked, batch.token_type_ids, batch.attention_mask)
        loss = mlm_loss(out.mlm_logits, labels) + nsp_loss(out.nsp_logits, batch.is_next)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: tiny_config(n_head=5), ValueError, "n_head=5 must divide d_model=48"),
        (lambda: tiny_config(pad_id=97), ValueError, "pad_id must be a token id"),
        (lambda: tiny_config(norm_eps=0.0), ValueError, "norm_eps"),
        (lambda: tiny_config(attention_impl="flash"), ValueError, "unknown attention_impl"),
        (lambda: tiny_config(type_vocab_size=0), ValueError, "type_vocab_size must be a positive integer"),
        (lambda: BertEncoder(tiny_config(), embeddings=torch.nn.Embedding(97, 48)), TypeError, "BertEmbeddings"),
        (lambda: BertConfig.from_dict({"vocab_size": 10, "hidden_size": 8}), TypeError, "hidden_size"),
    ],
)
def test_bad_configs(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


IDS = torch.randint(4, 97, (2, 7))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m: m(IDS[0]), ValueError, r"input_ids must have 2 dimensions"),
        (lambda m: m(IDS + 100), ValueError, r"input_ids has token ids outside \[0, 97\)"),
        (lambda m: m(torch.randint(4, 97, (2, 41))), ValueError, "max_len=40"),
        (lambda m: m(IDS, torch.full((2, 7), 3)), ValueError, r"token_type_ids has token ids outside \[0, 3\)"),
        (lambda m: m(IDS, torch.zeros(2, 6, dtype=torch.long)), ValueError, "token_type_ids must have the shape"),
        (lambda m: m(IDS, None, torch.ones(2, 7, dtype=torch.long)), TypeError, r"convert a 0/1 mask with \.bool\(\)"),
        (lambda m: m(IDS, None, torch.ones(2, 8, dtype=torch.bool)), ValueError, "attention_mask must have the shape"),
        (lambda m: m(IDS.float()), TypeError, "integer token ids"),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    torch.manual_seed(0)
    with pytest.raises(error, match=match):
        call(Bert(tiny_config()))
