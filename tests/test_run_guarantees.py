"""What a training run guarantees, each promise attacked: crafted checkpoints cannot run code, NaN
weights are never saved, one run per folder, an unwritable folder fails before step 1, a damaged
newest checkpoint falls back to the newest good one, and the command line never shows a traceback
for a user's mistake. (book/setup.md, "What a run guarantees", names these tests.)"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from llm_tutorial.__main__ import main
from llm_tutorial.data import get_batch
from llm_tutorial.models import GPT, GPTConfig
from llm_tutorial.models.neural_lm import FeedForwardLM, FeedForwardLMConfig
from llm_tutorial.train import NonFiniteLossError, TrainConfig, Trainer, list_checkpoints, load_checkpoint, lock
from llm_tutorial.train import checkpoint as checkpoint_module
from llm_tutorial.train.checkpoint import (
    MANIFEST,
    CheckpointSkippedWarning,
    DamagedCheckpointError,
    NonFiniteStateError,
    save_checkpoint,
)
from llm_tutorial.train.history import History
from llm_tutorial.train.objectives import causal_lm_loss
from llm_tutorial.train.optimizer import build_adamw
from llm_tutorial.train.rng import RandomState

REPO = Path(__file__).resolve().parents[1]
IDS = torch.randint(0, 23, (3000,), generator=torch.Generator().manual_seed(0))
TINY = {
    "model": {"preset": "gpt2", "n_layer": 1, "n_head": 2, "d_model": 16, "context_length": 16},
    "data": {"corpus": "tinyshakespeare", "tokenizer": "char", "val_fraction": 0.1},
    "train": {"batch_size": 4, "max_steps": 6, "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 2, "eval_interval": 3,
              "eval_batches": 2, "log_interval": 2, "checkpoint_interval": 3, "progress": False},
}


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m llm_tutorial ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "llm_tutorial", *args], env=env(), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def write_config(tmp_path: Path, config: dict | None = None, **train) -> str:
    config = json.loads(json.dumps(config or TINY))
    config["train"].update(train)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def small_checkpoint(directory: Path, step: int = 1) -> Path:
    torch.manual_seed(0)
    model = FeedForwardLM(FeedForwardLMConfig(vocab_size=13, window=3, d_embed=4, d_hidden=7))
    return save_checkpoint(directory, step, model=model, optimizer=build_adamw(model, 1e-3, 0.1, (0.9, 0.99)),
                           random_state=RandomState.capture({"batches": torch.Generator().manual_seed(1)}),
                           history=History(), train_config={}, extra={"metadata": {}})


def rewrite(path: Path, file: str, content: bytes | str, *, fix_manifest: bool = True) -> None:
    """Replace one file of a checkpoint and (as an attacker would) recompute its manifest entry."""
    target = path / file
    target.write_bytes(content.encode() if isinstance(content, str) else content)
    if fix_manifest:
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["files"][file] = checkpoint_module._file_record(target)
        (path / MANIFEST).write_text(json.dumps(manifest))


# ------------------------------------------------------------ 1. no code runs because a file says so
HOSTILE = [
    ("os:system", "os:system", "command"),
    ("subprocess:Popen", "subprocess:Popen", "args"),
    ("builtins:eval", "builtins:eval", "source"),
    ("tempfile:mkdtemp", "tempfile:mkdtemp", "dir"),
    ("llm_tutorial.train.checkpoint:os.system", "llm_tutorial.train.checkpoint:os.system", "command"),
    ("llm_tutorial.train.checkpoint:subprocess.Popen", "llm_tutorial:__builtins__.eval", "args"),
    ("llm_tutorial.models.gpt:GPT", "llm_tutorial.train.checkpoint:os.system", "command"),  # a real model, a hostile config
    ("llm_tutorial.models.gpt:GPT", "llm_tutorial.models.bert:BertConfig", "command"),  # a mismatched pair
    ("llm_tutorial.models.gpt:torch.load", "llm_tutorial.models.gpt:GPTConfig", "command"),
]


@pytest.mark.parametrize("model_class, config_class, argument", HOSTILE)
def test_a_crafted_checkpoint_runs_nothing(tmp_path, model_class, config_class, argument):
    path = small_checkpoint(tmp_path / "run")
    side_effect = tmp_path / "pwned"
    payload = {"command": f"touch {side_effect}", "args": ["touch", str(side_effect)],
               "source": f"open({str(side_effect)!r}, 'w')", "dir": str(side_effect)}[argument]
    state = json.loads((path / "state.json").read_text())
    state["model"] = {"class": model_class, "config_class": config_class, "config": {argument: payload}}
    rewrite(path, "state.json", json.dumps(state))
    checkpoint = load_checkpoint(tmp_path / "run")  # the files verify: the manifest was recomputed
    with pytest.raises(ValueError, match="refusing to rebuild"):
        checkpoint.build_model()
    with pytest.raises(SystemExit) as error:
        main(["sample", "--checkpoint", str(tmp_path / "run"), "--max-new-tokens", "1"])
    assert error.value.code == 2 and "refusing to rebuild" in str(error.value)
    time.sleep(0.05)
    assert not side_effect.exists(), "a crafted checkpoint ran code"


def test_every_registered_class_is_a_model_with_its_config():
    import dataclasses
    import importlib

    assert len(checkpoint_module.MODEL_CLASSES) == 6
    for name, (module_name, model_name, config_name) in checkpoint_module.MODEL_CLASSES.items():
        module = importlib.import_module(module_name)
        assert name == checkpoint_module._qualified_name(getattr(module, model_name))
        assert issubclass(getattr(module, model_name), torch.nn.Module)
        assert dataclasses.is_dataclass(getattr(module, config_name))


def test_a_registered_model_is_still_rebuilt(tmp_path):
    small_checkpoint(tmp_path)
    model = load_checkpoint(tmp_path).build_model()
    assert isinstance(model, FeedForwardLM) and model.config.vocab_size == 13


@pytest.mark.parametrize("config", [None, [1, 2], "vocab_size=13", {"vocab_size": "13"}, {"no_such_field": 1}])
def test_a_crafted_config_is_a_clear_error(tmp_path, config):
    path = small_checkpoint(tmp_path)
    state = json.loads((path / "state.json").read_text())
    state["model"]["config"] = config
    rewrite(path, "state.json", json.dumps(state))
    with pytest.raises(ValueError, match=r"no dataclass config|config in .*state.json"):
        load_checkpoint(tmp_path).build_model()


# ------------------------------------------------------------------------- 2. NaN is never saved
def llama_trainer(directory: Path, **overrides) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("llama", vocab_size=23, n_layer=2, n_head=2, n_kv_head=1, d_model=16, context_length=12))
    model.check_token_range = False
    settings = dict(batch_size=3, max_steps=40, lr=1e3, min_lr=1.0, warmup_steps=25, grad_clip=1.0, log_interval=10,
                    checkpoint_dir=str(directory), checkpoint_interval=5, progress=False, seed=0)
    return Trainer(model, causal_lm_loss, lambda n, g: get_batch(IDS, n, 12, g), TrainConfig(**{**settings, **overrides}))


def test_lr_1e3_poisons_the_weights_and_the_poison_is_never_saved(tmp_path):
    """With lr=1e3 the update of step 9 makes the weights NaN while every loss up to step 9 is
    finite: the checkpoint of step 10 is refused, step 5 is named, and resuming from it works."""
    trainer = llama_trainer(tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"weights or optimizer state became NaN or infinite by step 9 .*"
                                                 r"no checkpoint of step 10 was written\. The last good checkpoint, "
                                                 r".*step_00000005, is kept") as error:
        trainer.fit()
    assert all(math.isfinite(loss) for loss in trainer.history.train_loss), "the losses alone could not see it"
    assert error.value.step == 9
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]
    weights = load_checkpoint(tmp_path).path / "model.safetensors"
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(weights)).values())

    resumed = llama_trainer(tmp_path, lr=1e-3, min_lr=1e-4)
    resumed.resume(tmp_path)
    assert resumed.step == 5
    history = resumed.fit()
    assert history.step[-1] == 39 and all(math.isfinite(loss) for loss in history.train_loss)
    assert load_checkpoint(tmp_path).step == 40


def test_with_out_set_and_nothing_saved_yet_the_error_says_so(tmp_path):
    with pytest.raises(NonFiniteLossError, match=f"No checkpoint had been written to {tmp_path} yet"):
        llama_trainer(tmp_path, warmup_steps=6).fit()
    assert list_checkpoints(tmp_path) == []


def test_a_nan_gradient_at_the_last_step_before_a_checkpoint_is_caught(tmp_path):
    trainer = llama_trainer(tmp_path, lr=1e-3, min_lr=1e-4, warmup_steps=2, max_steps=20)
    weight = trainer.model.lm_head.weight
    weight.register_hook(lambda grad: grad * float("nan") if trainer.step == 14 else grad)
    with pytest.raises(NonFiniteLossError, match=r"by step 14 .*step_00000010, is kept"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005", "step_00000010"]


@pytest.mark.parametrize("poison", ["weight_nan", "weight_inf", "weight_neg_inf", "moment_nan", "buffer_nan"])
def test_save_checkpoint_refuses_non_finite_state(tmp_path, poison):
    model = GPT(GPTConfig.preset("gpt2", vocab_size=11, n_layer=1, n_head=2, d_model=8, context_length=6))
    optimizer = build_adamw(model, 1e-3, 0.1, (0.9, 0.99))
    model(torch.randint(0, 11, (2, 6))).sum().backward()
    optimizer.step()
    with torch.no_grad():
        if poison == "moment_nan":
            next(iter(optimizer.state.values()))["exp_avg"][0] = float("nan")
        elif poison == "buffer_nan":
            model.register_buffer("scale", torch.tensor([1.0, float("nan")]))
        else:
            value = {"weight_nan": float("nan"), "weight_inf": float("inf"), "weight_neg_inf": float("-inf")}[poison]
            model.blocks[0].mlp.up.weight[3, 1] = value
    with pytest.raises(NonFiniteStateError, match="refusing to write a checkpoint: 1 tensor"):
        save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer, random_state=RandomState.capture({}),
                        history=History(), train_config={})
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def test_the_command_line_names_the_last_good_checkpoint_and_resumes_from_it(tmp_path):
    config = dict(TINY, model={**TINY["model"], "preset": "llama", "n_kv_head": 1})
    path = write_config(tmp_path, config, max_steps=40, lr=1e3, min_lr=1.0, warmup_steps=25, eval_interval=10,
                        log_interval=10, checkpoint_interval=5)
    out = tmp_path / "run"
    result = cli("train", "--config", path, "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"The last good checkpoint, {out / 'step_00000005'}, is kept" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in list_checkpoints(out)] == ["step_00000005"]
    resumed = cli("train", "--resume", str(out), "--set", "train.lr=1e-3", "--set", "train.min_lr=1e-4")
    assert resumed.returncode == 0, resumed.stderr
    assert "from step 5" in resumed.stdout and load_checkpoint(out).step == 40


# --------------------------------------------------------------------------- 3. one run per folder
def wait_for(condition, what: str, process: subprocess.Popen | None = None, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert process is None or process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {limit} s"
        time.sleep(0.02)


def holder_pid(directory: Path) -> int | None:
    try:
        return json.loads((directory / lock.LOCK_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_two_real_runs_into_one_folder(tmp_path):
    """A second run, and a resume, of a folder a live run holds are refused at once, naming the
    holder; once the holder is SIGKILLed the folder is free and resuming it works."""
    out = tmp_path / "run"
    config = write_config(tmp_path, max_steps=2000, warmup_steps=10, eval_interval=1000, log_interval=20,
                          checkpoint_interval=10)
    holder = subprocess.Popen([sys.executable, "-m", "llm_tutorial", "train", "--config", config, "--out", str(out)],
                              env=env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: list_checkpoints(out) and holder_pid(out) == holder.pid, "checkpoint", holder)
        for args in (["--config", config, "--out", str(out)], ["--resume", str(out)]):
            started = time.monotonic()
            second = cli("train", *args)
            assert second.returncode == 2, second.stderr
            assert f"is in use by another run (pid {holder.pid} on " in second.stderr and "started 20" in second.stderr
            assert "Traceback" not in second.stderr and "parameters" not in second.stdout, "refused before any work"
            assert time.monotonic() - started < 60
        assert holder.poll() is None, "the first run is untouched"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stderr.close()
    step = load_checkpoint(out).step
    resumed = cli("train", "--resume", str(out), "--set", f"train.max_steps={step + 2}")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out).step == step + 2 and holder_pid(out) != holder.pid


def test_a_sigkilled_holder_never_blocks_the_next_run(tmp_path):
    code = ("import sys, time; from llm_tutorial.train import lock; lock.acquire(sys.argv[1]); "
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env(), cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(lock.RunLockedError, match=f"pid {holder.pid} on "):
            lock.acquire(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    key = lock.acquire(tmp_path)  # the OS released the dead process's lock
    try:
        assert holder_pid(tmp_path) == os.getpid()
    finally:
        lock.release(key)


def test_two_trainers_in_one_process_are_two_runs(tmp_path):
    first = llama_trainer(tmp_path, lr=1e-3, min_lr=1e-4, warmup_steps=2, max_steps=10)
    first.fit(until=6)  # fit has returned: the folder is free again
    assert not lock.holds(tmp_path)
    first.resume(tmp_path)  # from here the first trainer holds the folder until its fit ends
    second = llama_trainer(tmp_path, lr=1e-3, min_lr=1e-4, warmup_steps=2, max_steps=10)
    with pytest.raises(lock.RunLockedError, match=f"is in use by another run \\(pid {os.getpid()}"):
        second.resume(tmp_path)
    with pytest.raises(lock.RunLockedError):
        second.fit()
    first.fit()
    assert not lock.holds(tmp_path) and load_checkpoint(tmp_path).step == 10


def test_the_lock_is_released_when_fit_fails(tmp_path):
    with pytest.raises(NonFiniteLossError):
        llama_trainer(tmp_path, warmup_steps=6).fit()
    assert not lock.holds(tmp_path)
    lock.release(lock.acquire(tmp_path))


# ------------------------------------------------------------------ 4. an unwritable folder fails first
@pytest.mark.parametrize("where", ["a_file", "under_a_file", "/proc/llm_tutorial_run", "/proc/self/run",
                                   "/sys/llm_tutorial_run"])
def test_an_unwritable_out_fails_before_step_one(tmp_path, where, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    out = {"a_file": tmp_path / "a_file", "under_a_file": tmp_path / "a_file" / "run"}.get(where, Path(where))
    with pytest.raises(SystemExit) as error:
        main(["train", "--config", write_config(tmp_path), "--out", str(out)])
    assert error.value.code == 2
    message = capsys.readouterr()
    assert "--out" in message.err and str(out) in message.err and "parameters" not in message.out
    with pytest.raises(lock.RunDirectoryError):
        Trainer(torch.nn.Linear(2, 2), lambda m, b: m(b).sum(), lambda n, g: torch.ones(n, 2),
                TrainConfig(max_steps=2, warmup_steps=0, checkpoint_dir=str(out), progress=False)).fit()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into a read-only folder; the /proc and /sys cases above cover root")
def test_a_read_only_folder_fails_before_step_one(tmp_path):
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(lock.RunDirectoryError, match=f"--out {out / 'run'} is not writable: creating a file in {out}"):
            lock.check_writable(out / "run", "--out")
    finally:
        out.chmod(0o755)


# --------------------------------------------------------- 5. a damaged newest checkpoint is skipped
def two_checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    return small_checkpoint(tmp_path, 5), small_checkpoint(tmp_path, 10)


DAMAGE = {
    "manifest_truncated": (MANIFEST, lambda b: b[: len(b) // 2], False, "manifest.json is not valid JSON"),
    "manifest_not_a_mapping": (MANIFEST, lambda b: b"[1, 2]", False, "has format 'list'"),
    "manifest_other_format": (MANIFEST, lambda b: b.replace(b"checkpoint/1", b"checkpoint/9"), False, "has format"),
    "manifest_lists_extra_file": (MANIFEST, lambda b: json.dumps({**json.loads(b), "files": {
        **json.loads(b)["files"], "../../etc/passwd": {}}}).encode(), False, "must list exactly the files"),
    "weights_bit_flip": ("model.safetensors", lambda b: b[:-1] + bytes([b[-1] ^ 1]), False, "does not match"),
    "weights_truncated_manifest_recomputed": ("model.safetensors", lambda b: b[:-7], True,
                                              "model.safetensors cannot be read"),
    "optimizer_garbage_manifest_recomputed": ("optimizer.safetensors", lambda b: b"\x00" * 40, True,
                                              "optimizer.safetensors cannot be read"),
    "rng_empty_manifest_recomputed": ("rng.safetensors", lambda b: b"", True, "rng.safetensors cannot be read"),
    "state_not_json_manifest_recomputed": ("state.json", lambda b: b"{step: 10", True, "state.json is not valid JSON"),
    "state_binary_manifest_recomputed": ("state.json", lambda b: b"\xff\xfe\x00", True, "state.json is not valid JSON"),
    "state_missing_keys": ("state.json", lambda b: b'{"step": 10}', True, "must be a mapping with the keys"),
    "state_step_disagrees": ("state.json", lambda b: b.replace(b'"step": 10', b'"step": 99'), True,
                             "holds step 99, its manifest 10"),
    "state_bad_history": ("state.json", lambda b: json.dumps({**json.loads(b), "history": {"loss": [1]}}).encode(),
                          True, "the history is malformed"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_skips_a_damaged_newest_checkpoint_saying_why(tmp_path, damage):
    good, newest = two_checkpoints(tmp_path)
    file, edit, fix_manifest, reason = DAMAGE[damage]
    rewrite(newest, file, edit((newest / file).read_bytes()), fix_manifest=fix_manifest)
    with pytest.warns(CheckpointSkippedWarning, match=f"skipped step_00000010: checkpoint .* is damaged: .*{reason}"):
        checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.path == good and [p for p, _ in checkpoint.skipped] == [newest]
    with pytest.raises(DamagedCheckpointError, match=f"checkpoint {newest} is damaged: .*{reason}"):
        load_checkpoint(newest)  # asked for by name: no fallback


def test_truncated_weights_behind_a_recomputed_manifest_load_as_damaged_not_as_a_raw_safetensor_error(tmp_path):
    path = small_checkpoint(tmp_path)
    checkpoint = load_checkpoint(tmp_path)
    rewrite(path, "model.safetensors", (path / "model.safetensors").read_bytes()[:-3])  # after verification
    with pytest.raises(DamagedCheckpointError, match="model.safetensors cannot be read"):
        checkpoint.load_weights(FeedForwardLM(FeedForwardLMConfig(vocab_size=13, window=3, d_embed=4, d_hidden=7)))


def test_no_good_checkpoint_names_every_reason(tmp_path):
    first, second = two_checkpoints(tmp_path)
    for path in (first, second):
        (path / MANIFEST).write_text("{")
    with pytest.raises(DamagedCheckpointError, match=r"no checkpoint in .* verifies \(step_00000010: .*step_00000005: "):
        load_checkpoint(tmp_path)


def test_the_command_line_says_which_checkpoint_it_skipped(tmp_path):
    out = tmp_path / "run"
    main(["train", "--config", write_config(tmp_path), "--out", str(out)])
    newest = list_checkpoints(out)[-1]
    rewrite(newest, "model.safetensors", (newest / "model.safetensors").read_bytes()[:-5])
    result = cli("train", "--resume", str(out), "--set", "train.max_steps=8")
    assert result.returncode == 0, result.stderr
    assert "warning: skipped step_00000006: checkpoint" in result.stderr and "using step_00000003" in result.stderr
    assert "from step 3" in result.stdout and load_checkpoint(out).step == 8


# ------------------------------------------------------------- 6. the command line never shows a traceback
def corpus_file(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "corpus.bin"
    path.write_bytes(content)
    return str(path)


MISTAKES = {
    "device_tpu": (["--set", "device=tpu"], "device 'tpu' is not a device"),
    "device_meta": (["--set", "device=meta"], "this package runs on cpu, cuda, mps"),
    "device_number": (["--set", "device=3"], "device must be a string"),
    "device_cuda_without_cuda": (["--device", "cuda"], "asks for a CUDA GPU"),
    "device_cuda_7": (["--device", "cuda:7"], "CUDA"),
    "binary_corpus": ("binary", "is not UTF-8 text"),
    "bad_yaml_override": (["--set", "train.betas=[0.9, "], "is not valid YAML"),
    "unknown_corpus": (["--set", "data.corpus=/no/such/file.txt"], "neither a named corpus"),
    "nan_lr": (["--set", "train.lr=.nan"], "lr"),
    "negative_steps": (["--set", "train.max_steps=-1"], "max_steps must be a positive integer"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_line_and_exit_code_2(tmp_path, capsys, mistake):
    extra, expected = MISTAKES[mistake]
    if extra == "binary":
        extra = ["--set", f"data.corpus={corpus_file(tmp_path, bytes(range(256)) * 4)}"]
    if mistake.startswith("device_cuda") and torch.cuda.is_available():
        extra = ["--device", "cuda:99"]
    with pytest.raises(SystemExit) as error:
        main(["train", "--config", write_config(tmp_path), "--out", str(tmp_path / "run"), *extra])
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error: ") and expected in err and len(err.strip().splitlines()) == 1, err


def test_bad_yaml_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  preset: gpt2\ntrain: {lr: 1e-3\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(path)])
    assert f"{path} is not valid YAML at line" in capsys.readouterr().err
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(path)])
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_data_unavailable_permission_and_non_finite_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from llm_tutorial.data import corpora

    monkeypatch.setenv("LLM_TUTORIAL_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpora, "_fetch", lambda url: (_ for _ in ()).throw(OSError("offline (simulated)")))
    with pytest.raises(SystemExit) as error:
        main(["train", "--config", write_config(tmp_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert error.value.code == 2 and "tinyshakespeare.txt is not in" in err and len(err.strip().splitlines()) == 1
    monkeypatch.undo()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied (simulated)", str(tmp_path / "run"))

    monkeypatch.setattr(checkpoint_module, "save_file", denied)
    with pytest.raises(SystemExit) as error:
        main(["train", "--config", write_config(tmp_path), "--out", str(tmp_path / "run2")])
    assert error.value.code == 2 and "Permission denied (simulated)" in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["sample", "--checkpoint", "{run}", "--device", "cuda"], "asks for a CUDA GPU"),
    (["sample", "--checkpoint", "{run}", "--device", "tpu"], "is not a device"),
    (["sample", "--checkpoint", "{run}", "--temperature", "inf"], "temperature must be a finite number"),
    (["sample", "--checkpoint", "{run}", "--temperature", "nan"], "temperature must be a finite number"),
    (["sample", "--checkpoint", "{run}", "--top-k", "0"], "top_k must be a positive integer"),
    (["sample", "--checkpoint", "{run}", "--prompt", ""], "--prompt must hold at least one character"),
    (["sample", "--checkpoint", "{run}", "--prompt", "☃"], "☃"),
    (["sample", "--checkpoint", "{run}", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["sample", "--checkpoint", "{run}/nowhere"], "no complete checkpoint"),
    (["train", "--resume", "{run}", "--set", "train.max_steps=2"], "until must be an integer step"),
])
def test_sample_and_resume_mistakes_are_one_line(tmp_path_factory, capsys, args, expected):
    run = trained_run(tmp_path_factory)
    if "cuda" in args and torch.cuda.is_available():
        args, expected = [*args[:-1], "cuda:99"], "CUDA GPU(s)"
    with pytest.raises(SystemExit) as error:
        main([arg.format(run=run) for arg in args])
    err = capsys.readouterr().err
    assert error.value.code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


_RUN: list[Path] = []


def trained_run(tmp_path_factory) -> Path:
    if not _RUN:
        out = tmp_path_factory.mktemp("trained") / "run"
        main(["train", "--config", write_config(out.parent), "--out", str(out)])
        _RUN.append(out)
    return _RUN[0]


def test_debug_shows_the_traceback_and_plain_runs_never_do(tmp_path):
    plain = cli("train", "--config", write_config(tmp_path), "--set", "device=tpu")
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [plain.stderr.strip()]
    shown = cli("--debug", "train", "--config", write_config(tmp_path), "--set", "device=tpu")
    assert shown.returncode != 0 and "Traceback (most recent call last)" in shown.stderr and "ValueError" in shown.stderr
    with pytest.raises(ValueError, match="is not a device"):  # --debug after the command: the exception itself
        main(["train", "--debug", "--config", write_config(tmp_path), "--set", "device=tpu"])


def test_an_unexpected_error_is_one_line_asking_for_a_report(monkeypatch, capsys):
    from llm_tutorial import __main__ as cli_module

    monkeypatch.setitem(cli_module.COMMANDS, "sample", lambda args: [][1])
    with pytest.raises(SystemExit) as error:
        main(["sample", "--checkpoint", "x"])
    err = capsys.readouterr().err
    assert error.value.code == 2 and "unexpected IndexError" in err and "--debug" in err
