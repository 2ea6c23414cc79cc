"""environment_report: every field against an independent source, and it never imports Triton."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata

import pytest
import torch

from llm_tutorial import runtime
from llm_tutorial.runtime import EnvironmentReport, environment_report


def test_versions_and_device_match_their_sources():
    import transformers
    import triton

    report = environment_report()
    assert report.python == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert report.platform == f"{platform.system()} {platform.machine()}"
    assert report.torch == torch.__version__
    assert report.triton == triton.__version__
    assert report.transformers == transformers.__version__
    assert report.cuda_available == torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    assert report.device == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    assert report.mps_available == mps
    assert report.cpu_threads == torch.get_num_threads()


def test_a_missing_package_is_reported_as_none(monkeypatch):
    real_version = metadata.version

    def version(name: str) -> str:
        if name == "triton":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(runtime.metadata, "version", version)
    report = environment_report()
    assert report.triton is None
    assert report.transformers == real_version("transformers")
    assert "triton            —" in str(report)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("", False)])
def test_triton_interpret_follows_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert environment_report().triton_interpret is expected


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False)])
def test_quick_mode_follows_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("LLM_TUTORIAL_QUICK", value)
    assert environment_report().quick_mode is expected


def test_data_folders_and_the_corpora_found_there(monkeypatch, tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    monkeypatch.setenv("LLM_TUTORIAL_DATA", str(data))
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(cache))
    empty = environment_report()
    assert (empty.data_folder, empty.cache_folder, empty.corpora_on_disk) == (str(data), str(cache), ())
    assert "corpora_on_disk   none" in str(empty)

    (data / "tinyshakespeare.txt").write_text("x")
    (cache / "gpt2-merges.txt").write_text("x")
    assert environment_report().corpora_on_disk == ("tinyshakespeare", "gpt2-merges")

    monkeypatch.delenv("LLM_TUTORIAL_DATA")
    assert environment_report().data_folder is None
    assert environment_report().corpora_on_disk == ("gpt2-merges",)


def test_the_table_lists_every_field_once_aligned():
    report = environment_report()
    lines = str(report).splitlines()
    names = [line.split()[0] for line in lines]
    assert names == list(report.as_dict())
    assert len({line.index(line.split()[1], len(line.split()[0])) for line in lines}) == 1  # one value column
    assert isinstance(report, EnvironmentReport)


def test_the_report_does_not_import_triton_or_transformers():
    code = ("import sys; from llm_tutorial.runtime import environment_report; environment_report(); "
            "print(sorted(m for m in ('triton', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_progress_bars_respect_tqdm_disable(monkeypatch):
    """Recorded runs set TQDM_DISABLE=1; the package passes ``disable`` to tqdm explicitly, which
    would override tqdm's own reading of the variable, so it must honour it itself."""
    from llm_tutorial.runtime import progress_bars

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_bars() and progress_bars(True) and not progress_bars(False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_bars(True)


def test_trainer_draws_no_bar_when_tqdm_is_disabled(monkeypatch, capsys):
    import torch

    from llm_tutorial.train import TrainConfig, Trainer

    monkeypatch.setenv("TQDM_DISABLE", "1")
    model = torch.nn.Linear(3, 1)
    batches = lambda n, g: (torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g))  # noqa: E731
    loss = lambda m, batch: torch.nn.functional.mse_loss(m(batch[0]), batch[1])  # noqa: E731
    Trainer(model, loss, batches, TrainConfig(max_steps=3, batch_size=2, warmup_steps=1, progress=True)).fit()
    assert "training" not in capsys.readouterr().err


def test_the_printed_report_shows_no_absolute_folders(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LLM_TUTORIAL_DATA", str(tmp_path / "shared" / "data"))
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(home / ".cache" / "llm-tutorial"))
    report = environment_report()
    assert report.data_folder == str(tmp_path / "shared" / "data")  # as_dict keeps the full path
    text = str(report)
    assert str(tmp_path) not in text
    assert "data_folder       .../data" in text
    assert "cache_folder      ~/.cache/llm-tutorial" in text
