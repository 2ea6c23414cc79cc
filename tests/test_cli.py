"""The command line: help, training a tiny config, resuming, sampling, and clear config errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_tutorial.__main__ import build_parser, main
from llm_tutorial.train import TrainConfig, list_checkpoints, load_checkpoint
from llm_tutorial.train.run_config import PRESETS, load_run_config

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "model": {"preset": "gpt2", "n_layer": 1, "n_head": 2, "d_model": 16, "context_length": 16},
    "data": {"corpus": "tinyshakespeare", "tokenizer": "char", "val_fraction": 0.1},
    "train": {"batch_size": 4, "max_steps": 6, "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 2, "eval_interval": 3,
              "eval_batches": 2, "log_interval": 2, "checkpoint_interval": 3, "progress": False},
}


def write_config(tmp_path: Path, config: dict, name: str = "tiny.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_help_explains_every_option():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, expected in (("train", ["--config", "--set", "--resume", "--out", "--print-config"]),
                           ("sample", ["--checkpoint", "--prompt", "--max-new-tokens", "--temperature", "--top-k",
                                       "--num-samples", "--seed", "--device"])):
        options = {opt: action for action in commands[name]._actions for opt in action.option_strings}
        assert set(expected) <= set(options), name
        for opt in expected:
            assert options[opt].help and len(options[opt].help) > 15, f"{name} {opt} needs a help string"
    shown = subprocess.run([sys.executable, "-m", "llm_tutorial", "train", "--help"], capture_output=True, text=True,
                           cwd=REPO, check=True).stdout
    assert all(opt in shown for opt in ["--config", "--set", "--resume", "--out", "shakespeare-char"])


def test_train_resume_and_sample(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--config", write_config(tmp_path, TINY), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "parameters" in printed and "step 6 · train loss" in printed and "val loss" in printed
    assert [p.name for p in list_checkpoints(out)] == ["step_00000003", "step_00000006"]
    assert load_checkpoint(out).history.step == list(range(6))

    main(["train", "--resume", str(out), "--set", "train.max_steps=9"])  # the config comes from the checkpoint
    resumed = load_checkpoint(out)
    assert resumed.step == 9 and resumed.history.step == list(range(9))
    assert "from step 6" in capsys.readouterr().out

    sample = ["sample", "--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3"]
    main(sample)
    first = capsys.readouterr().out
    main(sample)
    assert capsys.readouterr().out == first, "the same seed gives the same sample"
    assert first.startswith("ROMEO:") and len(first.rstrip("\n")) >= len("ROMEO:") + 30
    assert len(first) == len("ROMEO:") + 40 + 1, "40 characters beyond a 16-token context, then a newline"


def test_print_config_shows_the_resolved_run(capsys):
    main(["train", "--config", "shakespeare-char", "--set", "train.lr=3e-4", "--print-config"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["lr"] == 3e-4 and shown["model"]["n_layer"] == 4 and shown["train"]["batch_size"] == 12


def test_presets_are_the_yaml_files_of_the_package():
    assert set(PRESETS) == {"shakespeare-char", "shakespeare-char-llama", "shakespeare-char-speedrun"}
    assert all(path.parent == REPO / "llm_tutorial" / "configs" for path in PRESETS.values())
    run = load_run_config("shakespeare-char")
    assert run.model == dict(preset="gpt2", n_layer=4, n_head=4, d_model=128, context_length=64, dropout=0.0)
    assert run.train == TrainConfig(), "the benchmark run trains with TrainConfig's defaults"
    llama = load_run_config("shakespeare-char-llama")
    assert llama.model["preset"] == "llama" and llama.model["n_kv_head"] == 2 and llama.train == TrainConfig()


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["train"].update(learning_rate=1e-3), r"train: unknown key 'learning_rate'\. Valid keys: batch_size"),
    (lambda c: c["model"].update(n_layers=2), r"model: unknown key 'n_layers'\. Did you mean 'n_layer'\?"),
    (lambda c: c.update(optimiser={}), "unknown key 'optimiser'"),
    (lambda c: c["model"].update(preset="gpt3"), "unknown model preset 'gpt3'"),
    (lambda c: c["model"].update(vocab_size=100), "vocab_size is set by the tokenizer"),
    (lambda c: c["model"].update(n_head=3), "n_head=3 must divide d_model=16"),
    (lambda c: c["train"].update(lr="fast"), "train.lr must be a number, got 'fast'"),
    (lambda c: c["train"].update(grad_accum_steps=0), "grad_accum_steps must be a positive integer"),
    (lambda c: c["train"].update(warmup_steps=7), r"warmup_steps must be an integer in \[0, 6\] \(0 to max_steps"),
    (lambda c: c["data"].update(tokenizer="words"), "unknown tokenizer 'words'"),
])
def test_bad_config_is_a_clear_error(tmp_path, edit, match):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    edit(config)
    with pytest.raises(SystemExit, match=match):
        main(["train", "--config", write_config(tmp_path, config), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists(), "no work may start"


def test_impossible_runs_fail_before_training(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="data.context_length=32 is longer than the model's context_length=16"):
        main(["train", "--config", write_config(tmp_path, TINY), "--out", str(out), "--set", "data.context_length=32"])
    small = tmp_path / "small.txt"
    small.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler")
    with pytest.raises(SystemExit, match="the batch is larger than the data: the validation split has 7 tokens"):
        main(["train", "--config", write_config(tmp_path, TINY), "--out", str(out), "--set", f"data.corpus={small}"])
    with pytest.raises(SystemExit, match="neither a named corpus"):
        main(["train", "--config", write_config(tmp_path, TINY), "--out", str(out), "--set", "data.corpus=nowhere.txt"])
    assert not out.exists()


def test_command_line_mistakes(tmp_path):
    with pytest.raises(SystemExit, match="neither a YAML file nor a preset; presets: shakespeare-char"):
        main(["train", "--config", "shakespeare-words"])
    with pytest.raises(SystemExit, match="--set expects key=value"):
        main(["train", "--config", "shakespeare-char", "--set", "train.lr"])
    with pytest.raises(SystemExit, match="unknown section 'optim'"):
        main(["train", "--config", "shakespeare-char", "--set", "optim.lr=1"])
    with pytest.raises(SystemExit, match="give --config FILE|PRESET, or --resume DIR"):
        main(["train"])
    with pytest.raises(SystemExit, match="no complete checkpoint there"):
        main(["train", "--resume", str(tmp_path)])
    with pytest.raises(SystemExit, match="no complete checkpoint in"):
        main(["sample", "--checkpoint", str(tmp_path)])


def test_a_fresh_run_will_not_overwrite_another(tmp_path):
    out = tmp_path / "run"
    config = write_config(tmp_path, TINY)
    main(["train", "--config", config, "--out", str(out), "--set", "train.max_steps=3", "--set", "train.warmup_steps=1"])
    with pytest.raises(SystemExit, match="already holds checkpoints of a run"):
        main(["train", "--config", config, "--out", str(out)])
