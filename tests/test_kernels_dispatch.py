"""Where kernels run: the interpreter when asked, the PyTorch reference otherwise, and no Triton needed."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # Triton reads it when the kernel modules are imported: before that

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from llm_tutorial import kernels
from llm_tutorial.kernels import available_backends, backend_for, reference
from llm_tutorial.kernels.backends import kernel_module, triton_available

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _all_kernels(x, w, b, q, k, v, logits, targets):
    """Every public kernel, forward and backward; returns outputs and gradients, in a fixed order."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b, q, k, v, logits)]
    x, w, b, q, k, v, logits = leaves
    outputs = [
        kernels.softmax(x),
        kernels.layer_norm(x, w, b, 1e-5),
        kernels.rms_norm(x, w, 1e-6),
        kernels.flash_attention(q, k, v, causal=True),
        kernels.flash_attention(q, k, v, causal=False, scale=0.5),
        kernels.cross_entropy(logits, targets),
    ]
    total = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outputs)
    grads = torch.autograd.grad(total, leaves)
    return [o.detach() for o in outputs] + list(grads)


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(3)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    targets = torch.randint(0, 150, (10,), generator=g)
    targets[3] = -100
    return randn(6, 40), randn(40), randn(40), randn(1, 2, 21, 16), randn(1, 2, 21, 16), randn(1, 2, 21, 16), randn(
        10, 150
    ), targets


def test_available_backends_on_this_machine():
    expected = (["triton"] if torch.cuda.is_available() else []) + ["interpreter", "reference"]
    assert available_backends() == (expected if triton_available() else ["reference"])


def test_backend_follows_the_device_and_the_environment(monkeypatch):
    if not triton_available():
        pytest.skip("the interpreter needs Triton; the no-Triton case is tested in a subprocess below")
    cpu = torch.zeros(2)
    assert backend_for(cpu) == "interpreter"
    assert backend_for(torch.zeros(2, device="meta")) == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert backend_for(cpu) == "reference"
    monkeypatch.delenv("TRITON_INTERPRET")
    assert backend_for(cpu) == "reference"
    with pytest.raises(TypeError, match="backend_for expects a torch.Tensor, got list"):
        backend_for([1.0])


def test_interpreter_and_pytorch_fallback_give_the_same_numbers(inputs, monkeypatch):
    if not triton_available():
        pytest.skip("the interpreter needs Triton")
    interpreted = _all_kernels(*inputs)
    monkeypatch.delenv("TRITON_INTERPRET")
    assert backend_for(inputs[0]) == "reference"
    fallback = _all_kernels(*inputs)
    for a, b in zip(interpreted, fallback):
        assert (a - b).abs().max() < 1e-11


def test_reference_implementations_match_torch(inputs):
    x, w, b, q, k, v, logits, targets = inputs
    pairs = [
        (reference.softmax(x), torch.softmax(x, -1)),
        (reference.layer_norm(x, w, b, 1e-5), F.layer_norm(x, (40,), w, b, 1e-5)),
        (reference.rms_norm(x, w, 1e-6), F.rms_norm(x, (40,), w, 1e-6)),
        (reference.attention(q, k, v, True, 0.25), F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.25)),
        (reference.cross_entropy(logits, targets), F.cross_entropy(logits, targets)),
    ]
    for ours, theirs in pairs:
        assert (ours - theirs).abs().max() < 1e-12


def test_changing_the_interpreter_flag_after_import_is_a_clear_error():
    if not triton_available():
        pytest.skip("needs Triton")
    kernels.softmax(torch.randn(2, 3))  # imports the kernel modules in interpreter mode
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET was on when triton was first imported"):
        kernel_module("triton_softmax", "triton")


def test_setting_the_interpreter_flag_after_importing_triton_is_a_clear_error():
    script = textwrap.dedent(
        """
        import os, torch, triton
        os.environ["TRITON_INTERPRET"] = "1"
        import llm_tutorial.kernels as K
        K.softmax(torch.randn(2, 3))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=120)
    assert result.returncode == 1
    assert "RuntimeError: TRITON_INTERPRET is on now but was off when `import triton` ran" in result.stderr


def test_package_imports_without_importing_triton_and_falls_back_without_it():
    # The package must not import triton; then a None entry in sys.modules makes `import triton`
    # raise ImportError, as on a machine without it.
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["TRITON_INTERPRET"] = "1"
        import torch, llm_tutorial, llm_tutorial.kernels as K
        assert "triton" not in sys.modules
        sys.modules["triton"] = None
        x = torch.randn(3, 5, dtype=torch.float64)
        assert K.available_backends() == ["reference"], K.available_backends()
        assert K.backend_for(x) == "reference"
        assert (K.softmax(x) - torch.softmax(x, -1)).abs().max() < 1e-12
        q = torch.randn(1, 1, 4, 16)
        assert K.flash_attention(q, q, q, causal=True).shape == (1, 1, 4, 16)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
