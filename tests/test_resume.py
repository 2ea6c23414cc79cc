"""Exact resume: stopped at step k and resumed, training repeats the uninterrupted run bit for bit
(on the CPU) — in one process, and after the training process is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from llm_tutorial.data import get_batch
from llm_tutorial.models import GPT, GPTConfig
from llm_tutorial.train import TrainConfig, Trainer, list_checkpoints, load_checkpoint
from llm_tutorial.train.objectives import causal_lm_loss

REPO = Path(__file__).resolve().parents[1]
IDS = torch.randint(0, 23, (3000,), generator=torch.Generator().manual_seed(0))


def make_trainer(checkpoint_dir: Path, preset: str) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(preset, vocab_size=23, n_layer=2, n_head=2, n_kv_head=1, d_model=16, context_length=12,
                                 dropout=0.2))  # dropout: the global RNG must be restored too
    config = TrainConfig(batch_size=3, max_steps=14, lr=3e-3, min_lr=3e-4, warmup_steps=3, eval_interval=4,
                         eval_batches=2, log_interval=3, checkpoint_dir=str(checkpoint_dir), checkpoint_interval=5,
                         progress=False, seed=11)
    return Trainer(model, causal_lm_loss, lambda n, g: get_batch(IDS[:2500], n, 12, g), config,
                   val_batches=lambda n, g: get_batch(IDS[2500:], n, 12, g))


@pytest.mark.parametrize("preset", ["gpt2", "llama"])
def test_resumed_training_is_bit_identical(tmp_path, preset):
    uninterrupted = make_trainer(tmp_path / "a", preset)
    expected = uninterrupted.fit()

    first = make_trainer(tmp_path / "b", preset)
    first.fit(until=7)  # stops between checkpoints: step 5 is the newest
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step_00000005"]
    torch.manual_seed(12345)  # scramble every generator: resume must restore them all
    second = make_trainer(tmp_path / "b", preset)
    second.resume(tmp_path / "b")
    assert second.step == 5
    got = second.fit()

    assert got.train_loss == expected.train_loss
    assert got.val_loss == expected.val_loss and got.eval_step == expected.eval_step
    assert got.grad_norm == expected.grad_norm and got.lr == expected.lr
    assert got.wall_time == sorted(got.wall_time), "wall time carries over from the first session"
    for (name, a), b in zip(uninterrupted.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name


TINY = {
    "model": {"preset": "gpt2", "n_layer": 1, "n_head": 2, "d_model": 16, "context_length": 16, "dropout": 0.1},
    "data": {"corpus": "tinyshakespeare", "tokenizer": "char", "val_fraction": 0.1},
    "train": {"batch_size": 4, "max_steps": 400, "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 10,
              "eval_interval": 100, "eval_batches": 2, "log_interval": 20, "checkpoint_interval": 25,
              "keep_checkpoints": 2, "progress": False, "seed": 5},
}


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "llm_tutorial", "train", *args]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_killed_with_sigkill_and_resumed_equals_the_uninterrupted_run(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    victim = subprocess.Popen(train_command("--config", str(config), "--out", str(killed)), env=run_env(), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not list_checkpoints(killed):
        assert victim.poll() is None, f"training ended before its first checkpoint: {victim.stderr.read()!r}"
        assert time.monotonic() < deadline, "no checkpoint within 90 s"
        time.sleep(0.01)
    assert victim.poll() is None, "the run must still be going when it is killed"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    victim.stderr.close()
    left = load_checkpoint(killed).step
    assert 25 <= left < 400

    subprocess.run(train_command("--resume", str(killed)), env=run_env(), cwd=REPO, check=True, capture_output=True)
    subprocess.run(train_command("--config", str(config), "--out", str(whole)), env=run_env(), cwd=REPO, check=True,
                   capture_output=True)

    resumed, expected = load_checkpoint(killed), load_checkpoint(whole)
    assert resumed.step == expected.step == 400
    assert resumed.history.train_loss == expected.history.train_loss
    assert resumed.history.val_loss == expected.history.val_loss
    weights, reference = load_file(str(resumed.path / "model.safetensors")), load_file(str(expected.path / "model.safetensors"))
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[k], reference[k]) for k in weights)
