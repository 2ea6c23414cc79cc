"""The encoder–decoder Transformer: parity with torch.nn.Transformer, masks, cache, and a task it must learn."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from llm_tutorial.losses import IGNORE_INDEX, seq2seq_loss
from llm_tutorial.models.transformer import Transformer, TransformerConfig

PAD, BOS, EOS = 0, 1, 2


def tiny_config(**overrides: object) -> TransformerConfig:
    sizes = dict(src_vocab_size=23, tgt_vocab_size=19, d_model=32, n_head=4, n_encoder_layer=2, n_decoder_layer=2,
                 d_ff=48, dropout=0.0, max_len=24)
    sizes.update(overrides)
    return TransformerConfig(**sizes)


def tiny_model(seed: int = 0, **overrides: object) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(**overrides)).eval()


def copy_attention(ours: nn.Module, theirs: nn.MultiheadAttention) -> None:
    q, k, v = ours.q_proj, ours.k_proj, ours.v_proj
    theirs.in_proj_weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
    theirs.in_proj_bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
    theirs.out_proj.load_state_dict(ours.out_proj.state_dict())


def copy_feed_forward_and_norms(ours: nn.Module, theirs: nn.Module, norms: list[str]) -> None:
    theirs.linear1.load_state_dict(ours.mlp.up.state_dict())
    theirs.linear2.load_state_dict(ours.mlp.down.state_dict())
    for their_norm, our_norm in zip(("norm1", "norm2", "norm3"), norms):
        getattr(theirs, their_norm).load_state_dict(getattr(ours, our_norm).state_dict())


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
@torch.no_grad()
def test_layers_match_torch_nn_transformer() -> None:
    """Same weights in ``torch.nn.Transformer`` (post-norm, ReLU, no final norms): same outputs."""
    model = tiny_model(1)
    model.double()
    c = model.config
    reference = nn.Transformer(c.d_model, c.n_head, c.n_encoder_layer, c.n_decoder_layer, c.d_ff, dropout=0.0,
                               batch_first=True, norm_first=False, dtype=torch.float64).eval()
    reference.encoder.norm = None  # the paper's post-norm stack has no final norm
    reference.decoder.norm = None
    for ours, theirs in zip(model.encoder, reference.encoder.layers):
        copy_attention(ours.attn, theirs.self_attn)
        copy_feed_forward_and_norms(ours, theirs, ["norm_attn", "norm_mlp"])
    for ours, theirs in zip(model.decoder, reference.decoder.layers):
        copy_attention(ours.attn, theirs.self_attn)
        copy_attention(ours.cross_attn, theirs.multihead_attn)
        copy_feed_forward_and_norms(ours, theirs, ["norm_attn", "norm_cross", "norm_mlp"])

    gen = torch.Generator().manual_seed(2)
    src = torch.randint(3, c.src_vocab_size, (3, 11), generator=gen)
    src[0, 7:], src[2, 4:] = PAD, PAD
    tgt_in = torch.randint(3, c.tgt_vocab_size, (3, 9), generator=gen)
    logits = model(src, tgt_in)

    src_x = model.src_embed(src) * math.sqrt(c.d_model) + model.positions(11)
    tgt_x = model.tgt_embed(tgt_in) * math.sqrt(c.d_model) + model.positions(9)
    hidden = reference(
        src_x, tgt_x, tgt_mask=nn.Transformer.generate_square_subsequent_mask(9, dtype=torch.float64),
        src_key_padding_mask=src == PAD, memory_key_padding_mask=src == PAD,
    )
    expected = hidden @ model.tgt_embed.weight.T
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)


@torch.no_grad()
def test_source_padding_does_not_change_real_positions() -> None:
    model = tiny_model(3)
    gen = torch.Generator().manual_seed(4)
    sentence = torch.randint(3, 23, (1, 6), generator=gen)
    tgt_in = torch.randint(3, 19, (1, 5), generator=gen)
    alone_memory = model.encode(sentence)
    alone_logits = model(sentence, tgt_in)

    padded = torch.cat([sentence, torch.full((1, 7), PAD)], dim=1)  # (1, 13)
    torch.testing.assert_close(model.encode(padded)[:, :6], alone_memory, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(padded, tgt_in), alone_logits, rtol=1e-5, atol=1e-5)

    junk = torch.cat([sentence, torch.randint(3, 23, (1, 7), generator=gen)], dim=1)  # real tokens behind a mask
    keep = torch.arange(13)[None] < 6
    torch.testing.assert_close(model(junk, tgt_in, keep), alone_logits, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(junk, tgt_in), alone_logits, atol=1e-3), "the mask must matter"


@torch.no_grad()
def test_decoder_is_causal() -> None:
    model = tiny_model(5)
    gen = torch.Generator().manual_seed(6)
    src = torch.randint(3, 23, (2, 8), generator=gen)
    tgt_in = torch.randint(3, 19, (2, 10), generator=gen)
    logits = model(src, tgt_in)
    for t in (0, 4, 9):
        changed = tgt_in.clone()
        changed[:, t:] = torch.randint(3, 19, changed[:, t:].shape, generator=gen)
        new_logits = model(src, changed)
        torch.testing.assert_close(new_logits[:, :t], logits[:, :t], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(new_logits[:, t], logits[:, t], atol=1e-3), "position t must see its own token"


@torch.no_grad()
def test_cached_decoding_equals_full_decoding() -> None:
    model = tiny_model(7)
    gen = torch.Generator().manual_seed(8)
    src = torch.randint(3, 23, (2, 8), generator=gen)
    src[1, 5:] = PAD
    tgt_in = torch.randint(3, 19, (2, 9), generator=gen)
    mask = src != PAD
    memory = model.encode(src)
    full = model.decode(tgt_in, memory, mask)
    cache = model.new_cache(batch_size=2)
    steps = [model.decode(tgt_in[:, :3], memory, mask, cache=cache)]  # a prompt, then one token at a time
    steps += [model.decode(tgt_in[:, t : t + 1], memory, mask, cache=cache) for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == 9


def test_parameter_count_closed_form_and_sharing() -> None:
    d, f, v_src, v_tgt = 32, 48, 23, 19
    attention, mlp, norm = 4 * (d * d + d), d * f + f + f * d + d, 2 * d
    encoder_layer, decoder_layer = attention + mlp + 2 * norm, 2 * attention + mlp + 3 * norm
    layers = 2 * encoder_layer + 2 * decoder_layer
    separate = tiny_model()
    assert separate.num_parameters() == (v_src + v_tgt) * d + layers  # output tied to the target table
    assert separate.num_parameters(non_embedding=True) == layers
    assert tiny_model(tie_output=False).num_parameters() == (v_src + 2 * v_tgt) * d + layers

    config = tiny_config()
    assert TransformerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config

    shared = tiny_model(src_vocab_size=19, share_embeddings=True)
    assert shared.src_embed.weight is shared.tgt_embed.weight is shared.lm_head.weight
    assert shared.num_parameters() == v_tgt * d + layers


def reversal_batch(n: int, length: int, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 1..length symbols, right-padded; targets ``[BOS] reversed [EOS]``, padded."""
    lengths = torch.randint(1, length + 1, (n,), generator=gen)
    src = torch.full((n, length), PAD)
    tgt = torch.full((n, length + 2), PAD)
    for row, size in enumerate(lengths.tolist()):
        symbols = torch.randint(3, vocab, (size,), generator=gen)
        src[row, :size] = symbols
        tgt[row, 0], tgt[row, 1 : size + 1], tgt[row, size + 1] = BOS, symbols.flip(0), EOS
    return src, tgt


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding by recomputation: the argmax token, appended, until every row has [EOS]."""
    memory, mask = model.encode(src), src != PAD
    out = torch.full((src.size(0), 1), BOS)
    for _ in range(max_new_tokens):
        next_token = model.decode(out, memory, mask)[:, -1].argmax(dim=-1)  # (B,)
        out = torch.cat([out, next_token[:, None]], dim=1)
        if (out == EOS).any(dim=1).all():
            break
    return out


def test_learns_to_reverse_sequences(one_thread: None) -> None:
    """Reverse 1–8 symbols from an alphabet of 10: >= 99% of 1000 fresh sequences exactly right."""
    vocab, length, steps, peak_lr = 13, 8, 600, 3e-3
    torch.manual_seed(0)
    config = TransformerConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=64, n_head=4, n_encoder_layer=2,
                               n_decoder_layer=2, d_ff=128, dropout=0.0, max_len=16, share_embeddings=True)
    model = Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    start, start_cpu = time.perf_counter(), time.process_time()
    for step in range(1, steps + 1):
        # warm-up, then cosine decay: post-norm Transformers need the warm-up (Vaswani et al., 2017)
        lr = peak_lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        src, tgt = reversal_batch(64, length, vocab, gen)
        targets = tgt[:, 1:].masked_fill(tgt[:, 1:] == PAD, IGNORE_INDEX)
        loss = seq2seq_loss(model(src, tgt[:, :-1]), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu

    model.eval()
    src, tgt = reversal_batch(1000, length, vocab, torch.Generator().manual_seed(123))
    predicted = greedy_decode(model, src, max_new_tokens=length + 1)
    correct = [
        predicted[row, : int((tgt[row] != PAD).sum())].tolist() == tgt[row][tgt[row] != PAD].tolist()
        for row in range(len(tgt))
    ]
    accuracy = sum(correct) / len(correct)
    print(f"reversal: {steps} steps, training {train_seconds:.1f} s wall / {train_cpu_seconds:.1f} s CPU, "
          f"sequence accuracy {accuracy:.3f}")
    assert accuracy >= 0.99


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: tiny_config(share_embeddings=True), ValueError, "share_embeddings needs one vocabulary"),
        (lambda: tiny_config(n_head=5), ValueError, "n_head=5 must divide d_model=32"),
        (lambda: tiny_config(d_model=15, n_head=3), ValueError, "d_model must be even"),
        (lambda: tiny_config(pad_id=19), ValueError, "pad_id must be a token id"),
        (lambda: tiny_config(dropout=1.0), ValueError, "dropout"),
        (lambda: tiny_config(activation="tanh"), ValueError, "unknown activation"),
        (lambda: tiny_config(n_encoder_layer=0), ValueError, "n_encoder_layer must be a positive integer"),
        (lambda: Transformer({"src_vocab_size": 3}), TypeError, "TransformerConfig"),
    ],
)
def test_bad_configs(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


SRC = torch.randint(3, 19, (2, 5))
TGT = torch.randint(3, 19, (2, 4))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m: m(SRC[0], TGT), ValueError, r"src must have 2 dimensions"),
        (lambda m: m(SRC, TGT[..., None]), ValueError, r"tgt_in must have 2 dimensions"),
        (lambda m: m(SRC, TGT + 10), ValueError, r"tgt_in has token ids outside \[0, 19\)"),
        (lambda m: m(SRC.float(), TGT), TypeError, "integer token ids"),
        (lambda m: m(torch.randint(3, 19, (2, 25)), TGT), ValueError, "beyond max_len=24"),
        (lambda m: m(SRC, TGT, torch.ones(2, 5)), TypeError, "src_mask must have dtype bool"),
        (lambda m: m(SRC, TGT, torch.ones(2, 6, dtype=torch.bool)), ValueError, "src_mask must have the shape of src"),
        (lambda m: m.decode(TGT, torch.randn(2, 5, 16)), ValueError, "memory must have last dimension 32"),
        (lambda m: m.decode(TGT, torch.randn(3, 5, 32)), ValueError, "memory has batch size 3"),
        (lambda m: m.decode(TGT, torch.randn(2, 5, 32), cache=m.new_cache(2, 3)), ValueError, "KV cache is full"),
        (lambda m: m.decode(TGT, torch.randn(2, 5, 32), cache="cache"), TypeError, "cache must be a KVCache"),
        (lambda m: m(SRC[:, :0], TGT), ValueError, "at least one token"),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call(tiny_model())
