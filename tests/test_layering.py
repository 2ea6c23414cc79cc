"""Layers point downward only: no module of the package imports one from a higher layer.

The layers, lowest first (a module may import from its own layer and from any lower one):

0. ``_checks``: the input checks every public door uses.
1. ``kernels``: the Triton kernels and their PyTorch references (pure tensor maths; the bench and
   correctness helpers of ``kernels`` use only ``kernels``).
2. text and maths that know no model: ``tokenizers``, ``data`` (corpora, batching, the examples of
   each pre-training objective), ``losses``, ``metrics``, ``memory``, ``quantize``, and ``runtime``
   (device and data-directory discovery).
3. ``nn``: the layers of a Transformer.
4. models and what runs one: ``models``, ``generate`` (decoding strategies), ``interop`` (weights
   from Hugging Face).
5. ``train``: the loop, its configuration, checkpoints and ``loss_fn`` per objective.
6. the command line and end-to-end tools: ``__main__``, ``throughput`` (tokens/s of a whole
   training run and of generation), ``assignments`` (coursework tooling), ``doctor`` (the
   environment check).

Every import counts, including those inside functions (a lazy import is still an arrow). The
test reads the source with ``ast``, so it needs no import of the package and sees every module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llm_tutorial"

LAYERS: dict[str, int] = {
    "_checks": 0,
    "kernels": 1,
    "tokenizers": 2,
    "data": 2,
    "losses": 2,
    "metrics": 2,
    "memory": 2,
    "quantize": 2,
    "runtime": 2,
    "nn": 3,
    "results": 3,
    "plotting": 2,
    "models": 4,
    "generate": 4,
    "interop": 4,
    "train": 5,
    "__main__": 6,
    "throughput": 6,
    "bench": 6,
    "speedrun": 6,
    "assignments": 6,
    "doctor": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``llm_tutorial`` module that ``path`` imports, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: str) -> set[str]:
    """The ``llm_tutorial`` modules imported by ``source``, a module of ``package``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "llm_tutorial":  # from llm_tutorial import nn
                found.update(f"llm_tutorial.{alias.name}" for alias in node.names)
            else:
                found.add(target)
    return {module for module in found if module.split(".")[0] == "llm_tutorial"}


def _layer(module: str) -> int | None:
    """The layer of ``llm_tutorial.<unit>...``; None for the package's own ``__init__``."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    unit = parts[1]
    if unit not in LAYERS:
        raise AssertionError(f"{module} belongs to no layer; add {unit!r} to LAYERS in tests/test_layering.py")
    return LAYERS[unit]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_found_and_parsed() -> None:
    names = {_module_name(path) for path in MODULES}
    assert {"llm_tutorial.nn.attention", "llm_tutorial.models.gpt", "llm_tutorial.train.trainer"} <= names
    assert _imports(PACKAGE / "models" / "gpt.py") >= {"llm_tutorial.nn", "llm_tutorial._checks"}


def _upward(module: str, imports: set[str]) -> list[str]:
    here = _layer(module)
    return sorted(m for m in imports if (there := _layer(m)) is not None and here is not None and there > here)


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(path) for path in MODULES])
def test_imports_point_downward(path: Path) -> None:
    module = _module_name(path)
    upward = _upward(module, _imports(path))
    assert not upward, f"{module} (layer {_layer(module)}) imports from a higher layer: {upward}"


def test_the_checker_sees_upward_imports() -> None:
    """The test can fail: relative, absolute and in-function imports of a higher layer are caught."""
    source = (
        "from ..train.batch import map_tensors\n"
        "def f():\n    import llm_tutorial.models.gpt\n"
        "from llm_tutorial import generate\n"
        "from .attention import causal_mask\n"
    )
    imports = _imports_in(source, "llm_tutorial.nn")
    assert imports == {
        "llm_tutorial.train.batch", "llm_tutorial.models.gpt", "llm_tutorial.generate", "llm_tutorial.nn.attention"
    }
    assert _upward("llm_tutorial.nn.probe", imports) == [
        "llm_tutorial.generate", "llm_tutorial.models.gpt", "llm_tutorial.train.batch"
    ]
    with pytest.raises(AssertionError, match="belongs to no layer"):
        _layer("llm_tutorial.newthing")
