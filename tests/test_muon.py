"""Muon (llm_tutorial.train.muon) against independent references.

* Newton–Schulz: on a matrix built as ``U diag(s) Vᵀ`` with known singular values, the output must
  be ``U diag(p⁽⁵⁾(s / ‖s‖)) Vᵀ`` where ``p(σ) = aσ + bσ³ + cσ⁵`` is iterated on the scalars — the
  iteration never touches singular vectors. Its singular values (``torch.linalg.svd``) land near 1
  and its direction matches the SVD's ``U Vᵀ``.
* The optimizer step: against a brute-force loop over parameters written here from the equations,
  and its AdamW groups against ``torch.optim.AdamW``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llm_tutorial.models.gpt import GPT, GPTConfig
from llm_tutorial.train import TrainConfig, Trainer
from llm_tutorial.train.muon import NS_COEFFICIENTS, Muon, build_muon, muon_parameter_split, newton_schulz
from llm_tutorial.train.objectives import causal_lm_loss
from llm_tutorial.train.optimizer import build_optimizer


def random_orthonormal(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    return q  # (n, k), orthonormal columns


def scalar_iteration(s: torch.Tensor, steps: int) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    x = s / s.norm()  # the Frobenius norm of U diag(s) Vᵀ is ‖s‖
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


@pytest.mark.parametrize("shape", [(7, 13), (13, 7), (9, 9), (1, 5), (33, 6)])
def test_newton_schulz_maps_singular_values_and_keeps_vectors(shape):
    g = torch.Generator().manual_seed(sum(shape))
    m, n = shape
    k = min(m, n)
    u, v = random_orthonormal(m, k, g), random_orthonormal(n, k, g)
    s = torch.rand(k, generator=g, dtype=torch.float64) * 0.95 + 0.05  # condition ≤ 20
    matrix = (u * s) @ v.T
    out = newton_schulz(matrix.float(), steps=5).double()
    expected = (u * scalar_iteration(s, 5)) @ v.T
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-4)


def test_newton_schulz_pushes_singular_values_towards_one_and_matches_svd_direction():
    g = torch.Generator().manual_seed(0)
    for m, n in [(64, 48), (48, 64), (128, 512), (17, 3)]:
        matrix = torch.randn(m, n, generator=g)
        out = newton_schulz(matrix)
        sigma = torch.linalg.svdvals(out)
        assert sigma.min() > 0.5 and sigma.max() < 1.25, (m, n, sigma.min(), sigma.max())
        u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
        polar = u @ vh  # the exact orthogonalisation U Vᵀ
        cosine = (out * polar).sum() / (out.norm() * polar.norm())
        assert cosine > 0.97, (m, n, cosine)
        # more steps do not drift: after 5 steps the values oscillate inside the band
        assert torch.linalg.svdvals(newton_schulz(matrix, steps=10)).max() < 1.25


def test_newton_schulz_shapes_dtypes_zero_and_batches():
    g = torch.Generator().manual_seed(1)
    batch = torch.randn(3, 6, 4, generator=g)
    out = newton_schulz(batch)
    assert out.shape == batch.shape
    for i in range(3):  # a batch is the matrices one by one
        torch.testing.assert_close(out[i], newton_schulz(batch[i]), atol=1e-5, rtol=1e-5)
    assert newton_schulz(batch.to(torch.bfloat16)).dtype == torch.bfloat16
    assert torch.equal(newton_schulz(torch.zeros(4, 5)), torch.zeros(4, 5))
    torch.testing.assert_close(newton_schulz(batch[0], steps=0), batch[0] / batch[0].norm(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (torch.randn(5), "expected shape"),
    (torch.ones(3, 3, dtype=torch.long), "floating-point"),
    ([[1.0, 2.0]], "Tensor"),
])
def test_newton_schulz_rejects_bad_inputs(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        newton_schulz(bad)
    with pytest.raises(ValueError, match="steps"):
        newton_schulz(torch.randn(3, 3), steps=-1)


def tiny_gpt(tied: bool = True, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("gpt2", vocab_size=11, context_length=8, n_layer=2, n_head=2, d_model=12,
                                tie_embeddings=tied))


@pytest.mark.parametrize("tied", [True, False])
def test_split_puts_each_parameter_in_exactly_one_place(tied):
    model = tiny_gpt(tied)
    hidden, matrices, vectors = muon_parameter_split(model)
    ids = [id(p) for p in hidden + matrices + vectors]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})
    assert all(p.ndim == 2 for p in hidden) and all(p.ndim == 1 for p in vectors)
    assert id(model.token_embedding.weight) in {id(p) for p in matrices}
    assert id(model.lm_head.weight) not in {id(p) for p in hidden}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m is not model.lm_head]
    assert {id(p) for p in hidden} == {id(m.weight) for m in linears} and len(hidden) == 12  # 6 per block


def reference_step(params, grads, states, *, lr, muon, mu=0.95, betas=(0.9, 0.99), eps=1e-8, wd=0.0, step=1, ns=5):
    """One update, parameter by parameter, from the equations of the module's docstring."""
    for p, g, state in zip(params, grads, states):
        if muon:
            state["m"] = mu * state.get("m", torch.zeros_like(p)) + (1 - mu) * g
            n = mu * state["m"] + (1 - mu) * g
            o = newton_schulz(n, ns)
            p.mul_(1 - lr * wd).sub_(lr * math.sqrt(max(1.0, p.shape[0] / p.shape[1])) * o)
        else:
            state["m"] = betas[0] * state.get("m", torch.zeros_like(p)) + (1 - betas[0]) * g
            state["v"] = betas[1] * state.get("v", torch.zeros_like(p)) + (1 - betas[1]) * g * g
            m_hat = state["m"] / (1 - betas[0] ** step)
            v_hat = state["v"] / (1 - betas[1] ** step)
            p.mul_(1 - lr * wd).sub_(lr * m_hat / (v_hat.sqrt() + eps))


def test_muon_step_matches_a_brute_force_reference():
    model = tiny_gpt()
    optimizer = build_muon(model, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.99), muon_lr_scale=7.0)
    groups = optimizer.param_groups
    copies = [[p.detach().clone() for p in group["params"]] for group in groups]
    states = [[{} for _ in group["params"]] for group in groups]
    g = torch.Generator().manual_seed(3)
    for step in range(1, 4):
        for gi, group in enumerate(groups):
            grads = [torch.randn(p.shape, generator=g) for p in group["params"]]
            for p, grad in zip(group["params"], grads):
                p.grad = grad.clone()
            lr = 3e-3 * group["lr_scale"]
            reference_step(copies[gi], grads, states[gi], lr=lr, muon=group["use_muon"], wd=group["weight_decay"],
                           step=step)
        optimizer.step()
        for gi, group in enumerate(groups):
            for p, ref in zip(group["params"], copies[gi]):
                torch.testing.assert_close(p.detach(), ref, atol=1e-5, rtol=1e-5)
    assert groups[0]["use_muon"] and groups[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("ns", [1, 3])
def test_config_muon_ns_steps_reaches_the_update(ns):
    """``TrainConfig.muon_ns_steps`` must change the iteration the step runs, not only be stored."""
    model = tiny_gpt()
    config = TrainConfig(optimizer="muon", lr=2e-3, muon_lr_scale=4.0, weight_decay=0.0, muon_ns_steps=ns)
    optimizer = build_optimizer(model, config)
    group = optimizer.param_groups[0]
    assert group["use_muon"] and group["ns_steps"] == ns
    start = [p.detach().clone() for p in group["params"]]
    grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(start)]
    for p, grad in zip(group["params"], grads):
        p.grad = grad.clone()
    optimizer.step()
    expected, five = [p.clone() for p in start], [p.clone() for p in start]
    reference_step(expected, grads, [{} for _ in start], lr=8e-3, muon=True, ns=ns)
    reference_step(five, grads, [{} for _ in start], lr=8e-3, muon=True, ns=5)
    for p, ref, other in zip(group["params"], expected, five):
        torch.testing.assert_close(p.detach(), ref, atol=1e-6, rtol=1e-5)
        assert (p.detach() - other).abs().max() > 1e-5  # the count matters: five steps land elsewhere


def test_adamw_groups_match_torch_adamw():
    model, twin = tiny_gpt(), tiny_gpt()
    ours = Muon([{"params": list(model.parameters()), "weight_decay": 0.1}], lr=1e-2, betas=(0.8, 0.95))
    theirs = torch.optim.AdamW(twin.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1, foreach=False)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_muon_rejects_vectors_and_bad_settings():
    with pytest.raises(ValueError, match="matrices"):
        Muon([{"params": [nn.Parameter(torch.zeros(3))], "use_muon": True}])
    with pytest.raises(ValueError, match="momentum"):
        Muon([{"params": [nn.Parameter(torch.zeros(3, 3))]}], momentum=1.0)
    with pytest.raises(ValueError, match="muon_lr_scale"):
        build_muon(tiny_gpt(), 1e-3, 0.0, (0.9, 0.99), muon_lr_scale=0.0)
    with pytest.raises(ValueError, match="no hidden"):
        muon_parameter_split(nn.Embedding(3, 4))
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    for bad in (0, -2, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="muon_ns_steps"):
            TrainConfig(optimizer="muon", muon_ns_steps=bad)


def test_trainer_trains_with_muon_and_resumes_exactly(tmp_path):
    data = torch.randint(0, 11, (400,), generator=torch.Generator().manual_seed(5))

    def batches(n, gen):
        starts = torch.randint(0, len(data) - 9, (n,), generator=gen)
        index = starts[:, None] + torch.arange(8)
        return data[index], data[index + 1]

    def trainer(directory):
        config = TrainConfig(batch_size=4, max_steps=6, warmup_steps=1, optimizer="muon", muon_lr_scale=5.0,
                             checkpoint_dir=str(directory), checkpoint_interval=3, log_interval=1, progress=False)
        return Trainer(tiny_gpt(seed=7), causal_lm_loss, batches, config)

    whole = trainer(tmp_path / "a")
    assert isinstance(whole.optimizer, Muon)
    whole.fit()
    first = trainer(tmp_path / "b")
    first.fit(until=3)
    resumed = trainer(tmp_path / "b")
    resumed.resume(tmp_path / "b")
    resumed.fit()
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    start = tiny_gpt(seed=7)
    hidden = muon_parameter_split(whole.model)[0]
    assert all(not torch.equal(p, q) for p, q in zip(hidden, muon_parameter_split(start)[0]))  # Muon moved them
