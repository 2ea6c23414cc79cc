"""A GPT training step with the Triton kernels (interpreted) matches the PyTorch path."""

import dataclasses
import os

os.environ["TRITON_INTERPRET"] = "1"  # Triton reads it when the kernel modules are imported: before that

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from llm_tutorial import kernels  # noqa: E402
from llm_tutorial.models import GPT, GPTConfig  # noqa: E402


def _training_step(model: GPT, idx: torch.Tensor, targets: torch.Tensor, loss_fn) -> tuple[float, dict, dict]:
    """Loss, gradients and parameters after one SGD step.

    (SGD, not Adam: Adam's first step moves every weight by ±lr whatever the size of its gradient,
    so rounding noise in a near-zero gradient would flip a whole step.)
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model(idx)  # (B, T, V)
    loss = loss_fn(logits, targets)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    return loss.item(), grads, {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("preset", ["gpt2", "llama"])
def test_training_step_with_kernels_matches_sdpa(preset, monkeypatch):
    config = GPTConfig.preset(preset, vocab_size=97, context_length=32, n_layer=2, n_head=2, d_model=64,
                              **({"n_kv_head": 1} if preset == "llama" else {}))
    torch.manual_seed(0)
    reference_model = GPT(config)
    kernel_model = GPT(dataclasses.replace(config, attention_impl="triton"))
    kernel_model.load_state_dict(reference_model.state_dict())
    idx = torch.randint(0, 97, (2, 21))  # 21 tokens: not a multiple of any tile
    targets = torch.randint(0, 97, (2, 21))
    targets[:, :3] = -100  # e.g. a prompt that is not trained on

    calls = []

    def counting_flash_attention(*args, **kwargs):
        calls.append(kwargs.get("causal"))
        return flash_attention(*args, **kwargs)

    flash_attention = kernels.flash_attention
    monkeypatch.setattr(kernels, "flash_attention", counting_flash_attention)
    assert kernels.backend_for(idx) == "interpreter"

    loss, grads, params = _training_step(
        reference_model, idx, targets, lambda z, t: F.cross_entropy(z.reshape(-1, 97), t.reshape(-1)))
    kernel_loss, kernel_grads, kernel_params = _training_step(kernel_model, idx, targets, kernels.cross_entropy)

    assert calls == [True] * config.n_layer  # every layer ran our causal kernel
    assert abs(kernel_loss - loss) < 1e-5
    for name, grad in grads.items():
        # Relative to each gradient's size, with a floor: the key bias's true gradient is exactly 0
        # (softmax ignores a constant added to every score of a row), so both paths give only rounding noise.
        tolerance = 1e-4 * grad.abs().max().item() + 1e-8
        assert (kernel_grads[name] - grad).abs().max().item() < tolerance, name
        assert (kernel_params[name] - params[name]).abs().max().item() < 1e-5, name
