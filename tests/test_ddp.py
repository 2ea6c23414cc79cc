"""DistributedDataParallel under torchrun: 2 CPU processes (gloo) train exactly like one process
with the same global batch, within floating-point tolerance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from llm_tutorial.train import load_checkpoint
from llm_tutorial.train.distributed import Process, shard

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "model": {"preset": "gpt2", "n_layer": 2, "n_head": 2, "d_model": 32, "context_length": 16, "dropout": 0.0},
    "data": {"corpus": "tinyshakespeare", "tokenizer": "char", "val_fraction": 0.1},
    "train": {"batch_size": 8, "grad_accum_steps": 2, "max_steps": 20, "lr": 3.0e-3, "min_lr": 3.0e-4,
              "warmup_steps": 4, "eval_interval": 10, "eval_batches": 2, "log_interval": 5, "checkpoint_interval": 10,
              "progress": False, "seed": 7},
}


def test_two_processes_equal_one(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    train = ["-m", "llm_tutorial", "train", "--config", str(config), "--out"]
    subprocess.run([sys.executable, *train, str(tmp_path / "one")], env=env, cwd=REPO, check=True, capture_output=True)
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *train, str(tmp_path / "two")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=100,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "× 2 process(es)" in launched.stdout and launched.stdout.count("parameters ·") == 1, "rank 0 alone logs"

    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert two.step == one.step == 20
    assert two.history.train_loss == pytest.approx(one.history.train_loss, rel=1e-5)
    assert two.history.val_loss == pytest.approx(one.history.val_loss, rel=1e-5)
    assert one.history.train_loss[-1] < one.history.train_loss[0] - 0.5, "the runs must actually learn"
    a, b = load_file(str(one.path / "model.safetensors")), load_file(str(two.path / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.name != ".lock") == ["step_00000010", "step_00000020"]


def test_each_process_takes_its_own_slice():
    x = torch.arange(24).reshape(6, 4)
    batch = (x, {"labels": x + 100})
    first, second = (shard(batch, Process(rank, 2, torch.device("cpu"))) for rank in (0, 1))
    assert torch.equal(first[0], x[:3]) and torch.equal(second[0], x[3:])
    assert torch.equal(second[1]["labels"], x[3:] + 100)
    assert shard(batch, Process(0, 1, torch.device("cpu"))) is batch
    with pytest.raises(ValueError, match="a batch of 6 examples cannot be split evenly over 4 processes"):
        shard(batch, Process(1, 4, torch.device("cpu")))
    with pytest.raises(TypeError, match="a batch must be a tensor or a tuple/list/dict of tensors, got str"):
        shard("tokens", Process(0, 2, torch.device("cpu")))
