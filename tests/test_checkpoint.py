"""Checkpoints: exact round trip, atomic writes, damage detection, pruning, and no unpickling."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from llm_tutorial.models.neural_lm import FeedForwardLM, FeedForwardLMConfig
from llm_tutorial.train import History, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from llm_tutorial.train import checkpoint as checkpoint_module
from llm_tutorial.train.optimizer import build_adamw
from llm_tutorial.train.rng import RandomState


class TiedLM(nn.Module):
    """Embedding and output projection share one matrix (weight tying), as in GPT-2."""

    def __init__(self, vocab: int = 11, width: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(idx)))


def trained_state(model: nn.Module, steps: int = 3):
    optimizer = build_adamw(model, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
    for _ in range(steps):
        idx = torch.randint(0, 11, (4, 5))
        loss = nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return optimizer


def write(directory, step, model, optimizer, generator=None, keep=2, history=None):
    return save_checkpoint(
        directory, step, model=model, optimizer=optimizer,
        random_state=RandomState.capture({"batches": generator or torch.Generator().manual_seed(1)}),
        history=history or History(step=[0, 1], train_loss=[2.5, float("nan")], lr=[1e-3, 1e-3], grad_norm=[1.0, 2.0]),
        train_config={"lr": 1e-3}, extra={"note": "hello"}, keep=keep,
    )


def test_round_trip_restores_weights_optimizer_and_history(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    optimizer = trained_state(model)
    path = write(tmp_path, 3, model, optimizer)
    assert path.name == "step_00000003"

    torch.manual_seed(1)
    fresh = TiedLM()
    fresh_optimizer = build_adamw(fresh, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
    checkpoint = load_checkpoint(tmp_path)
    checkpoint.load_weights(fresh)
    fresh_optimizer.load_state_dict(checkpoint.optimizer_state())

    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert fresh.head.weight is fresh.embed.weight, "weight tying must survive loading"
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    for index, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(value, loaded["state"][index][key]), (index, key)
    assert loaded["param_groups"] == saved["param_groups"]
    assert checkpoint.step == 3
    assert checkpoint.extra == {"note": "hello"}
    assert checkpoint.history.train_loss[0] == 2.5 and np.isnan(checkpoint.history.train_loss[1])


def test_random_state_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(123)
    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    random.random(), np.random.randn(3), torch.rand(2), torch.rand(2, generator=generator)
    model = TiedLM()
    write(tmp_path, 0, model, build_adamw(model, 1e-3, 0.0, (0.9, 0.99)), generator=generator)
    expected = (random.random(), np.random.randn(4).tolist(), torch.rand(3).tolist(), torch.rand(3, generator=generator).tolist())

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    other = torch.Generator().manual_seed(0)
    load_checkpoint(tmp_path).random_state().restore({"batches": other})
    got = (random.random(), np.random.randn(4).tolist(), torch.rand(3).tolist(), torch.rand(3, generator=other).tolist())
    assert got == expected


def test_rebuilds_a_package_model_from_its_config(tmp_path):
    torch.manual_seed(0)
    model = FeedForwardLM(FeedForwardLMConfig(vocab_size=13, window=3, d_embed=4, d_hidden=7))
    write(tmp_path, 1, model, build_adamw(model, 1e-3, 0.1, (0.9, 0.99)))
    rebuilt = load_checkpoint(tmp_path).build_model()
    assert rebuilt.config == model.config
    idx = torch.randint(0, 13, (2, 9))
    assert torch.equal(rebuilt(idx), model(idx))


def test_model_without_config_cannot_be_rebuilt(tmp_path):
    model = TiedLM()
    write(tmp_path, 1, model, build_adamw(model, 1e-3, 0.1, (0.9, 0.99)))
    with pytest.raises(ValueError, match=r"refusing to rebuild .*TiedLM.*call Checkpoint.load_weights\(model\)"):
        load_checkpoint(tmp_path).build_model()


def test_wrong_model_is_a_clear_error(tmp_path):
    model = TiedLM(vocab=11)
    write(tmp_path, 1, model, build_adamw(model, 1e-3, 0.1, (0.9, 0.99)))
    with pytest.raises(ValueError, match="do not fit this model"):
        load_checkpoint(tmp_path).load_weights(TiedLM(vocab=12))


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = TiedLM()
    optimizer = trained_state(model)
    write(tmp_path, 2, model, optimizer)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load tried to unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    checkpoint = load_checkpoint(tmp_path)
    checkpoint.load_weights(TiedLM())
    build_adamw(TiedLM(), 1e-3, 0.1, (0.9, 0.99)).load_state_dict(checkpoint.optimizer_state())
    checkpoint.random_state().restore({"batches": torch.Generator()})
    assert sorted(p.name for p in checkpoint.path.iterdir()) == [
        "manifest.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = TiedLM()
    optimizer = trained_state(model)
    first = write(tmp_path, 10, model, optimizer)
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path, 20, model, optimizer)
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000010"], "no partial or temporary directory may remain"
    assert latest_checkpoint(tmp_path) == first
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_a_killed_write_leaves_only_a_hidden_directory_that_is_ignored(tmp_path):
    model = TiedLM()
    first = write(tmp_path, 10, model, trained_state(model))
    half_written = tmp_path / ".step_00000020.abcd"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(b"\x00" * 10)
    no_manifest = tmp_path / "step_00000030"
    no_manifest.mkdir()
    assert latest_checkpoint(tmp_path) == first
    assert load_checkpoint(tmp_path).step == 10


def test_damaged_file_is_detected(tmp_path):
    model = TiedLM()
    path = write(tmp_path, 4, model, trained_state(model))
    original = (path / "model.safetensors").read_bytes()
    flipped = bytearray(original)
    flipped[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="model.safetensors does not match"):
        load_checkpoint(tmp_path)
    (path / "model.safetensors").write_bytes(original)
    assert load_checkpoint(tmp_path).step == 4
    (path / "rng.safetensors").unlink()
    with pytest.raises(ValueError, match="rng.safetensors is missing"):
        load_checkpoint(tmp_path)


def test_keeps_only_the_newest(tmp_path):
    model = TiedLM()
    optimizer = trained_state(model)
    for step in (5, 10, 15, 20):
        write(tmp_path, step, model, optimizer, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000015", "step_00000020"]
    manifest = json.loads((tmp_path / "step_00000020" / "manifest.json").read_text())
    assert manifest["step"] == 20 and set(manifest["files"]) == {
        "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"}


def test_rewriting_a_step_replaces_it(tmp_path):
    model = TiedLM()
    optimizer = trained_state(model)
    write(tmp_path, 5, model, optimizer)
    with torch.no_grad():
        model.norm.weight.fill_(3.0)
    write(tmp_path, 5, model, optimizer)
    fresh = TiedLM()
    load_checkpoint(tmp_path).load_weights(fresh)
    assert torch.all(fresh.norm.weight == 3.0)
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000005"]


def test_missing_checkpoint_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint in"):
        load_checkpoint(tmp_path)
    model = TiedLM()
    optimizer = build_adamw(model, 1e-3, 0.1, (0.9, 0.99))
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        write(tmp_path, -1, model, optimizer)
    with pytest.raises(ValueError, match="keep must be a positive integer"):
        write(tmp_path, 1, model, optimizer, keep=0)
