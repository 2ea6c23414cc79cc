"""The environment doctor: each missing piece is found, named with its fix, and decides the exit code."""

from __future__ import annotations

import getpass
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import pytest

from llm_tutorial import doctor
from llm_tutorial.__main__ import main
from llm_tutorial.data.corpora import CORPORA

REPO = Path(__file__).resolve().parents[1]


def check(report: doctor.DoctorReport, name: str) -> doctor.Check:
    (found,) = [c for c in report.checks if c.name == name]
    return found


@pytest.fixture
def data_folder(tmp_path, monkeypatch) -> Path:
    """The book's data in a private folder (so a test may damage it) and an empty cache."""
    folder = tmp_path / "data"
    folder.mkdir()
    for corpus in CORPORA.values():
        source = Path(os.environ["LLM_TUTORIAL_DATA"]) / corpus.filename
        (folder / corpus.filename).write_bytes(source.read_bytes())
    monkeypatch.setenv("LLM_TUTORIAL_DATA", str(folder))
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    return folder


def without(monkeypatch, *distributions: str) -> None:
    """Pretend these distributions are not installed."""
    real = doctor._installed
    monkeypatch.setattr(doctor, "_installed", lambda name: None if name in distributions else real(name))


def test_this_machine_is_healthy_and_the_report_shows_no_machine_paths(data_folder):
    report = doctor.diagnose(probe_triton=False)
    assert report.ok, str(report)
    text = str(report)
    assert text.endswith("Everything a chapter needs is here.")
    for name in ("python", "torch", "device", "threads", "transformers [interop]", "sacrebleu [interop]",
                 "nbformat [coursework]", "jupyterlab [book]", "pytest [test]", "chromium", *(
                     c.filename for c in CORPORA.values())):
        assert check(report, name)
    assert check(report, "torch").detail.startswith(metadata.version("torch"))
    assert check(report, "tinyshakespeare.txt").detail == "in $LLM_TUTORIAL_DATA, checksum ok"
    for private in (str(data_folder), str(data_folder.parent), str(Path.home()), sys.prefix, sys.executable,
                    str(REPO), getpass.getuser() + "/"):
        assert private not in text, f"the report shows a machine path: {private}"


def test_a_missing_chapter_package_fails_with_its_fix(data_folder, monkeypatch):
    without(monkeypatch, "sacrebleu", "transformers")
    report = doctor.diagnose(probe_triton=False)
    assert not report.ok
    missing = check(report, "sacrebleu [interop]")
    assert missing.status == doctor.MISSING and "python3 tasks.py book" in missing.fix
    assert {c.name for c in report.problems} == {"sacrebleu [interop]", "transformers [interop]"}
    assert "fix: python3 tasks.py book" in str(report) and "Missing or wrong for the chapters" in str(report)


def test_a_missing_tool_of_the_book_build_is_reported_but_does_not_fail(data_folder, monkeypatch):
    without(monkeypatch, "pytest", "jupyter-book")
    report = doctor.diagnose(probe_triton=False)
    assert report.ok
    assert check(report, "pytest [test]").status == doctor.MISSING
    assert "only for running the book's tests" in check(report, "pytest [test]").detail


def test_versions_other_than_the_pins(data_folder, monkeypatch):
    real = doctor._installed
    versions = {"tiktoken": "0.7.1", "einops": "0.1.0"}  # tested 0.14.0; pyproject needs einops>=0.8
    monkeypatch.setattr(doctor, "_installed", lambda name: versions.get(name) or real(name))
    report = doctor.diagnose(probe_triton=False)
    assert check(report, "tiktoken [interop]").status == doctor.NOTE  # works, numbers may differ
    assert check(report, "einops").status == doctor.WRONG
    assert [c.name for c in report.problems] == ["einops"]


def test_installed_from_a_wheel_without_constraints_uses_the_requirement_ranges(data_folder, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "_package_root", lambda: tmp_path)  # site-packages: no constraints.txt there
    without(monkeypatch, "tiktoken")
    report = doctor.diagnose(probe_triton=False)
    assert "installed from a wheel" in check(report, "llm-tutorial").detail
    assert check(report, "numpy").detail.endswith("(needs >=1.26)")
    assert check(report, "tiktoken [interop]").fix == 'python -m pip install "llm-tutorial[interop]"'


def test_old_python_fails(data_folder, monkeypatch):
    monkeypatch.setattr(platform, "python_version", lambda: "3.9.18")
    report = doctor.diagnose(probe_triton=False)
    assert check(report, "python").status == doctor.WRONG and not report.ok


def test_data_missing_corrupt_and_offline(data_folder, monkeypatch, tmp_path):
    (data_folder / "gpt2-merges.txt").unlink()
    report = doctor.diagnose(probe_triton=False)
    assert check(report, "gpt2-merges.txt").status == doctor.NOTE and report.ok  # downloaded on first use
    offline = doctor.diagnose(offline=True, probe_triton=False)
    merges = check(offline, "gpt2-merges.txt")
    assert merges.status == doctor.MISSING and not offline.ok
    assert "python -m llm_tutorial data prepare FOLDER" in merges.fix and CORPORA["gpt2-merges"].url in merges.fix

    (data_folder / "tinyshakespeare.txt").write_text("First Citizen:\n")
    report = doctor.diagnose(probe_triton=False)
    assert check(report, "tinyshakespeare.txt").status == doctor.WRONG and not report.ok

    monkeypatch.delenv("LLM_TUTORIAL_DATA")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "gpt2-vocab.json").write_bytes((data_folder / "gpt2-vocab.json").read_bytes())
    assert check(doctor.diagnose(probe_triton=False), "gpt2-vocab.json").detail == "cached, checksum ok"


@pytest.mark.skipif(platform.system() != "Linux", reason="Triton is installed on Linux only")
def test_triton_interpreter_runs_and_its_failure_is_reported(data_folder, monkeypatch):
    assert check(doctor.diagnose(), "triton").status == doctor.OK  # really runs a kernel (about 2 s)
    monkeypatch.setattr(doctor, "_INTERPRETER_PROBE", "raise SystemExit('interpreter broken')")
    broken = check(doctor.diagnose(), "triton")
    assert broken.status == doctor.WRONG and "interpreter broken" in broken.detail
    without(monkeypatch, "triton")
    report = doctor.diagnose(probe_triton=False)
    assert check(report, "triton").status == doctor.MISSING and not report.ok


def test_triton_off_linux_is_a_note(data_folder, monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(sys, "platform", "darwin")  # what the requirement markers read
    report = doctor.diagnose(probe_triton=False)
    assert check(report, "triton").status == doctor.NOTE
    assert "triton [kernels]" not in {c.name for c in report.checks}, str(report)  # its marker excludes macOS
    assert report.ok


def test_chromium(data_folder, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    monkeypatch.delenv("LLM_TUTORIAL_CHROMIUM", raising=False)
    missing = check(doctor.diagnose(probe_triton=False), "chromium")
    assert missing.status == doctor.MISSING and not missing.needed and "apt-get install chromium" in missing.fix
    browser = tmp_path / "chrome"
    browser.write_text("")
    monkeypatch.setenv("LLM_TUTORIAL_CHROMIUM", str(browser))
    assert check(doctor.diagnose(probe_triton=False), "chromium").status == doctor.OK


def test_command_exit_codes(data_folder, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_INTERPRETER_PROBE", "pass")
    main(["doctor"])  # returns normally: exit code 0
    assert "Everything a chapter needs is here." in capsys.readouterr().out
    (data_folder / "gpt2-vocab.json").unlink()
    main(["doctor"])  # a data file is downloaded on first use...
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--offline"])  # ...unless the machine is offline
    assert exit_.value.code == 1
    capsys.readouterr()
    without(monkeypatch, "tiktoken")
    with pytest.raises(SystemExit) as exit_:
        main(["doctor"])
    assert exit_.value.code == 1
    assert "tiktoken [interop]" in capsys.readouterr().out
