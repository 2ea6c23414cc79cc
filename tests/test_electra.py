"""ELECTRA: generator and discriminator against Hugging Face, exact labels, no gradient through sampling."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from test_bert import hf_encoder_names, load_into_hugging_face, randomise_

from llm_tutorial.data import load_text
from llm_tutorial.losses import IGNORE_INDEX
from llm_tutorial.models.bert import BertConfig
from llm_tutorial.models.electra import Electra, ElectraConfig, ElectraDiscriminator, ElectraGenerator

PAD, CLS, SEP, MASK = 0, 1, 2, 3
VOCAB = 61


def bert_config(d_model: int, **overrides: object) -> BertConfig:
    sizes = dict(vocab_size=VOCAB, d_model=d_model, n_head=2, n_layer=2, d_ff=2 * d_model, max_len=32,
                 dropout=0.0, embedding_size=16)
    sizes.update(overrides)
    return BertConfig(**sizes)


def electra_config(**overrides: object) -> ElectraConfig:
    values = dict(generator=bert_config(16), discriminator=bert_config(32), mask_id=MASK, special_ids=(CLS, SEP))
    values.update(overrides)
    return ElectraConfig(**values)


def hf_electra_config(config: BertConfig):
    return transformers.ElectraConfig(
        vocab_size=config.vocab_size, embedding_size=config.embedding_size, hidden_size=config.d_model,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head, intermediate_size=config.d_ff,
        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        max_position_embeddings=config.max_len, type_vocab_size=config.type_vocab_size,
        layer_norm_eps=config.norm_eps, pad_token_id=config.pad_id,
    )


def batch(gen: torch.Generator, size: int = 4, length: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] tokens [SEP] [PAD]...`` rows of different lengths, and their attention mask."""
    ids = torch.randint(4, VOCAB, (size, length), generator=gen)
    lengths = torch.randint(length // 2, length + 1, (size,), generator=gen)
    lengths[0] = length
    ids[:, 0] = CLS
    for row, n in enumerate(lengths.tolist()):
        ids[row, n - 1] = SEP
        ids[row, n:] = PAD
    return ids, ids != PAD


GENERATOR_HEAD = {
    "generator_predictions.dense.weight": "mlm_head.dense.weight",
    "generator_predictions.dense.bias": "mlm_head.dense.bias",
    "generator_predictions.LayerNorm.weight": "mlm_head.norm.weight",
    "generator_predictions.LayerNorm.bias": "mlm_head.norm.bias",
    "generator_lm_head.weight": "mlm_head.decoder.weight",
    "generator_lm_head.bias": "mlm_head.decoder.bias",
}
DISCRIMINATOR_HEAD = {
    "discriminator_predictions.dense.weight": "head.dense.weight",
    "discriminator_predictions.dense.bias": "head.dense.bias",
    "discriminator_predictions.dense_prediction.weight": "head.score.weight",
    "discriminator_predictions.dense_prediction.bias": "head.score.bias",
}
HF_MODELS = {
    "generator": ("ElectraForMaskedLM", GENERATOR_HEAD),
    "discriminator": ("ElectraForPreTraining", DISCRIMINATOR_HEAD),
}


@pytest.mark.parametrize("part", ["generator", "discriminator"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_hugging_face_electra(part: str, dtype: torch.dtype, tolerance: float) -> None:
    gen = torch.Generator().manual_seed(0)
    config = bert_config(16 if part == "generator" else 32, type_vocab_size=2)  # embedding_size 16: projected
    model = (ElectraGenerator if part == "generator" else ElectraDiscriminator)(config).eval()
    randomise_(model, gen)
    class_name, head = HF_MODELS[part]
    reference = getattr(transformers, class_name)(hf_electra_config(config)).eval()
    names = hf_encoder_names(config.n_layer, theirs="electra.") | head
    if config.embedding_size != config.d_model:
        names |= {f"electra.embeddings_project.{kind}": f"encoder.project.{kind}" for kind in ("weight", "bias")}
    ours = model.state_dict()
    state = {theirs: ours[mine] for theirs, mine in names.items()}
    load_into_hugging_face(reference, state, model, dtype)

    ids, mask = batch(gen)
    types = (torch.arange(ids.size(1)) >= 9).long().expand_as(ids) * mask
    with torch.no_grad():
        logits = model(ids, types, mask)
        expected = reference(input_ids=ids, token_type_ids=types, attention_mask=mask.long()).logits
    error = (logits - expected)[mask].abs().max().item()
    print(f"ELECTRA {part} vs HF {class_name} ({dtype}): max |Δ| logits {error:.2e}")
    assert error < tolerance


def test_step_labels_are_exact_and_losses_combine() -> None:
    torch.manual_seed(1)
    model = Electra(electra_config())
    ids, mask = batch(torch.Generator().manual_seed(1), size=8)
    out = model(ids, attention_mask=mask, rng=torch.Generator().manual_seed(2))

    masked = out.mlm_labels != IGNORE_INDEX
    assert out.generator_logits.shape == (8, 20, VOCAB) and out.discriminator_logits.shape == (8, 20)
    assert masked.any() and not masked[~mask].any(), "padding is never masked"
    assert not masked[:, 0].any() and not masked[ids == SEP].any(), "[CLS] and [SEP] are never masked"
    assert torch.equal(out.mlm_labels[masked], ids[masked])
    assert torch.equal(out.corrupted_ids[~masked], ids[~masked]), "only masked positions are replaced"
    assert torch.equal(out.is_replaced, (out.corrupted_ids != ids).long()), "replaced ⇔ differs from the original"
    assert out.is_replaced.any()
    torch.testing.assert_close(out.loss, out.generator_loss + 50.0 * out.discriminator_loss)


def test_same_rng_same_step() -> None:
    torch.manual_seed(3)
    model = Electra(electra_config()).eval()
    ids, mask = batch(torch.Generator().manual_seed(3))
    first = model(ids, attention_mask=mask, rng=torch.Generator().manual_seed(4))
    again = model(ids, attention_mask=mask, rng=torch.Generator().manual_seed(4))
    assert torch.equal(first.corrupted_ids, again.corrupted_ids) and torch.equal(first.loss, again.loss)


@pytest.mark.parametrize("share_embeddings", [False, True])
def test_discriminator_loss_does_not_train_the_generator(share_embeddings: bool) -> None:
    """The samples carry no gradient: L_disc reaches the generator only through shared embeddings."""
    torch.manual_seed(5)
    model = Electra(electra_config(share_embeddings=share_embeddings))
    ids, mask = batch(torch.Generator().manual_seed(5))
    out = model(ids, attention_mask=mask, rng=torch.Generator().manual_seed(6))
    out.discriminator_loss.backward()
    shared = {id(p) for p in model.discriminator.encoder.embeddings.parameters()} if share_embeddings else set()
    reached = [name for name, p in model.generator.named_parameters() if p.grad is not None and id(p) not in shared]
    assert reached == []
    assert all(p.grad is not None for p in model.discriminator.parameters())
    if share_embeddings:
        assert model.generator.encoder.embeddings is model.discriminator.encoder.embeddings
        assert model.generator.encoder.embeddings.token.weight.grad.abs().sum() > 0


def shakespeare_batch(size: int, length: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``[CLS] characters [SEP]`` rows of Tiny Shakespeare: real text, so masked tokens are predictable."""
    text = load_text("tinyshakespeare")[:20_000]
    alphabet = {ch: i + 4 for i, ch in enumerate(sorted(set(text)))}
    chars = torch.tensor([alphabet[ch] for ch in text[: size * (length - 2)]]).view(size, length - 2)
    ids = torch.cat([torch.full((size, 1), CLS), chars, torch.full((size, 1), SEP)], dim=1)  # (B, T)
    return ids, torch.ones_like(ids, dtype=torch.bool), len(alphabet) + 4


def test_a_few_steps_reduce_both_losses(one_thread: None) -> None:
    ids, mask, vocab_size = shakespeare_batch(16, 24)
    torch.manual_seed(7)
    model = Electra(electra_config(generator=bert_config(16, vocab_size=vocab_size),
                                   discriminator=bert_config(32, vocab_size=vocab_size)))

    def losses() -> tuple[float, float]:
        with torch.no_grad():
            out = model(ids, attention_mask=mask, rng=torch.Generator().manual_seed(8))
        return out.generator_loss.item(), out.discriminator_loss.item()

    before = losses()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = torch.Generator().manual_seed(9)
    for _ in range(25):
        loss = model(ids, attention_mask=mask, rng=rng).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = losses()
    print(f"ELECTRA 25 steps: generator loss {before[0]:.3f} -> {after[0]:.3f}, "
          f"discriminator loss {before[1]:.3f} -> {after[1]:.3f}")
    assert after[0] < 0.9 * before[0] and after[1] < 0.9 * before[1], f"losses before {before}, after {after}"


def test_config_round_trips_through_json_and_counts_parameters() -> None:
    config = electra_config()
    assert ElectraConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    shared, separate = Electra(config), Electra(electra_config(share_embeddings=False))
    table = (VOCAB + 32 + 2) * 16  # token, position, type tables of width 16
    assert separate.num_parameters() - shared.num_parameters() == table + 2 * 16  # + the embedding LayerNorm
    assert separate.num_parameters(non_embedding=True) - shared.num_parameters(non_embedding=True) == 2 * 16


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: electra_config(generator=bert_config(16, embedding_size=8)), ValueError, "needs equal embedding_size"),
        (lambda: electra_config(generator=bert_config(16, vocab_size=60)), ValueError, "must agree on vocab_size"),
        (lambda: electra_config(generator=bert_config(16, max_len=16)), ValueError, "must agree on max_len"),
        (lambda: electra_config(mask_id=VOCAB), ValueError, "mask_id must be a token id"),
        (lambda: electra_config(special_ids=(CLS, -1)), ValueError, "special_ids must be a token id"),
        (lambda: electra_config(rtd_weight=0), ValueError, "rtd_weight must be a positive number"),
        (lambda: electra_config(mask_prob=1.5), ValueError, "mask_prob"),
        (lambda: electra_config(discriminator="base"), TypeError, "discriminator must be a BertConfig"),
        (lambda: Electra(bert_config(16)), TypeError, "ElectraConfig"),
    ],
)
def test_bad_configs(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


IDS = torch.randint(4, VOCAB, (2, 6))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m: m(IDS[0]), ValueError, "input_ids must have 2 dimensions"),
        (lambda m: m(torch.randint(4, VOCAB, (2, 33))), ValueError, "max_len=32"),
        (lambda m: m(IDS, torch.full((2, 6), 2)), ValueError, r"token_type_ids has token ids outside \[0, 2\)"),
        (lambda m: m(IDS, attention_mask=torch.ones(2, 6)), TypeError, "attention_mask"),
        (lambda m: m(IDS, rng=1234), TypeError, "rng must be a torch.Generator"),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    torch.manual_seed(0)
    with pytest.raises(error, match=match):
        call(Electra(electra_config()))
