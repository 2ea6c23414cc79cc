"""XLNet's permutation LM: masks against a brute-force construction, the identity order as CLM,
no leakage of a target's own token or of later-in-order tokens, and bad inputs."""

import itertools

import pytest
import torch

from llm_tutorial.data.pretraining_examples import permutation_lm_example
from llm_tutorial.losses import plm_loss
from llm_tutorial.models.permutation_lm import PermutationLM, PermutationLMConfig
from llm_tutorial.nn import causal_mask, num_predicted, order_ranks, permutation_masks
from llm_tutorial.train.objectives import permutation_lm_loss


def brute_force_masks(order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk the order: the token at z_t may see z_0..z_t (content) or z_0..z_{t-1} (query)."""
    T = len(order)
    content = torch.zeros(T, T, dtype=torch.bool)
    query = torch.zeros(T, T, dtype=torch.bool)
    for t, i in enumerate(order):
        for s in range(t + 1):
            content[i, order[s]] = True
            if s < t:
                query[i, order[s]] = True
    return content, query


@pytest.mark.parametrize("T", [1, 2, 5, 7, 13, 31])
def test_masks_equal_brute_force_for_random_orders(T):
    generator = torch.Generator().manual_seed(T)
    orders = torch.stack([torch.randperm(T, generator=generator) for _ in range(4)])  # (4, T)
    content, query = permutation_masks(orders)
    assert content.shape == query.shape == (4, T, T)
    for row, order in enumerate(orders.tolist()):
        expected_content, expected_query = brute_force_masks(order)
        assert torch.equal(content[row], expected_content)
        assert torch.equal(query[row], expected_query)
        assert torch.equal(order_ranks(orders[row])[torch.tensor(order)], torch.arange(T))


def test_all_orders_of_a_short_sequence():
    for order in itertools.permutations(range(4)):
        content, query = permutation_masks(torch.tensor(order))
        expected = brute_force_masks(list(order))
        assert torch.equal(content, expected[0]) and torch.equal(query, expected[1])
        assert query.sum() == 6 and content.sum() == 10  # T(T-1)/2 and T(T+1)/2 pairs in every order


@pytest.mark.parametrize("T", [1, 6, 9])
def test_identity_order_gives_the_causal_masks(T):
    content, query = permutation_masks(torch.arange(T))
    assert torch.equal(content, causal_mask(T))
    assert torch.equal(query, causal_mask(T) & ~torch.eye(T, dtype=torch.bool))


def small_model(seed=0, vocab=11, T=9):
    torch.manual_seed(seed)
    return PermutationLM(PermutationLMConfig(vocab_size=vocab, context_length=T, n_layer=2, n_head=2,
                                             d_model=16, d_ff=32)).eval().double()


def test_no_leakage_of_the_target_or_of_later_tokens():
    """The prediction at z_t must not change when x_{z_t}, or any token later in the order, changes;
    and it must change when an earlier-in-order token changes (the test can fail)."""
    T, vocab = 9, 11
    model = small_model(vocab=vocab, T=T)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        ids = torch.randint(0, vocab, (1, T), generator=generator)
        order = torch.randperm(T, generator=generator)[None]
        targets = order.clone()  # predict every position
        changed = ids.repeat(T + 1, 1)  # row 0 unchanged; row 1 + s changes the token at order[s]
        for s in range(T):
            changed[1 + s, order[0, s]] = (ids[0, order[0, s]] + 1 + s) % vocab
        with torch.no_grad():
            logits = model(changed, order.expand(T + 1, T), targets.expand(T + 1, T))  # (T + 1, T, V)
        base = logits[0]  # row t predicts position order[t]
        for t in range(T):
            for s in range(T):
                after = logits[1 + s, t]
                if s >= t:  # the target itself (s == t) or a later-in-order token
                    torch.testing.assert_close(after, base[t], rtol=0, atol=1e-12)
                elif t > 0:
                    assert (after - base[t]).abs().max() > 1e-6, "an earlier-in-order token must matter"


def test_identity_order_is_a_causal_lm():
    """Identity order, every position predicted: the logits at t depend on x_<t only, and the
    PLM loss is the mean of -log p(x_t | x_<t), the CLM loss of the same logits."""
    T, vocab = 9, 11
    model = small_model(vocab=vocab, T=T)
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, vocab, (3, T), generator=generator)
    order = torch.arange(T).expand(3, T)
    with torch.no_grad():
        logits = model(ids, order, order)  # (3, T, V)
        for t in range(T):
            future = ids.clone()
            future[:, t:] = torch.randint(0, vocab, (3, T - t), generator=generator)
            torch.testing.assert_close(model(future, order, order)[:, t], logits[:, t], rtol=0, atol=1e-12)
    nll = -logits.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)  # (3, T)
    torch.testing.assert_close(plm_loss(logits, ids), nll.mean())


def test_example_and_loss():
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 11, (4, 9), generator=generator)
    example = permutation_lm_example(ids, K=6, generator=generator)
    assert example.targets.shape == (4, num_predicted(9, 6)) == (4, 2)
    for row in range(4):
        assert sorted(example.order[row].tolist()) == list(range(9))
        assert torch.equal(example.targets[row], example.order[row, -2:])
        assert torch.equal(example.labels[row], ids[row, example.targets[row]])
    model = small_model()
    loss = permutation_lm_loss(model, example._replace(input_ids=example.input_ids))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.query_init.grad is not None and model.query_init.grad.abs().sum() > 0


def test_num_predicted():
    assert num_predicted(32, 6) == 5 and num_predicted(32, 7) == 5 and num_predicted(3, 6) == 1
    assert num_predicted(10, 1) == 10
    with pytest.raises(ValueError, match="K must be >= 1"):
        num_predicted(10, 0.5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="permutation of 0..3"):
        permutation_masks(torch.tensor([0, 1, 1, 3]))
    with pytest.raises(ValueError, match="row 1"):
        permutation_masks(torch.tensor([[0, 1, 2], [2, 2, 0]]))
    with pytest.raises(TypeError, match="integer positions"):
        permutation_masks(torch.tensor([0.0, 1.0]))
    model = small_model()
    ids = torch.randint(0, 11, (2, 9))
    with pytest.raises(ValueError, match="shape of ids"):
        model(ids, torch.arange(8).expand(2, 8), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"positions in \[0, 8\]"):
        model(ids, torch.arange(9).expand(2, 9), torch.full((2, 1), 9))
    with pytest.raises(ValueError, match="context_length"):
        small_model(T=9)(torch.randint(0, 11, (1, 10)), torch.arange(10)[None], torch.zeros(1, 1, dtype=torch.long))


def test_transformer_cross_attention_maps():
    """The maps equal softmax(q kᵀ/√d) recomputed by hand from the first decoder layer's inputs,
    rows sum to 1, padded source keys get 0, and the model's outputs do not change."""
    from llm_tutorial.models import Transformer, TransformerConfig

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab_size=13, tgt_vocab_size=13, d_model=16, n_head=2,
                                          n_encoder_layer=1, n_decoder_layer=2, d_ff=32, dropout=0.0)).eval()
    src = torch.randint(1, 13, (2, 7))
    src[1, 5:] = 0  # padding
    tgt = torch.randint(1, 13, (2, 5))
    captured = {}
    handle = model.decoder[0].cross_attn.register_forward_pre_hook(
        lambda module, args: captured.update(x=args[0], memory=args[1]))
    with torch.no_grad():
        before = model(src, tgt)
        maps = model.cross_attention_maps(src, tgt)
    handle.remove()
    assert len(maps) == 2 and maps[0].shape == (2, 2, 5, 7)
    attn = model.decoder[0].cross_attn
    q = attn.q_proj(captured["x"]).view(2, 5, 2, 8).transpose(1, 2)
    k = attn.k_proj(captured["memory"]).view(2, 7, 2, 8).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) / 8**0.5
    scores = scores.masked_fill((src == 0)[:, None, None, :], float("-inf"))
    torch.testing.assert_close(maps[0], scores.softmax(-1).detach())
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 2, 5))
    assert maps[1][1, :, :, 5:].abs().max() == 0
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt), before)
    assert attn.weights is None and not attn.keep_weights
