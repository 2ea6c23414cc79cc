"""ChapterResults: what it records, when it writes, and what it refuses."""

import json

import pytest

from llm_tutorial.results import ChapterResults, load_results, results_folder


def test_full_run_writes_every_value(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_QUICK", "0")
    results = ChapterResults("ch05", folder=tmp_path)
    results.record("gpt_val", 1.624)
    results.update(steps=3000, name="llama", curve=[2.0, 1.5])
    path = results.save()
    assert path == tmp_path / "ch05.json"
    assert json.loads(path.read_text()) == {"gpt_val": 1.624, "steps": 3000, "name": "llama", "curve": [2.0, 1.5]}
    assert load_results("ch05", folder=tmp_path)["gpt_val"] == 1.624
    assert not list(tmp_path.glob(".ch05-*")), "the temporary file is renamed, not left behind"


def test_quick_mode_never_overwrites(tmp_path, monkeypatch):
    (tmp_path / "ch05.json").write_text('{"gpt_val": 1.624}\n')
    monkeypatch.setenv("LLM_TUTORIAL_QUICK", "1")
    results = ChapterResults("ch05", folder=tmp_path)
    results.record("gpt_val", 9.9)
    assert results.save() is None
    assert json.loads((tmp_path / "ch05.json").read_text()) == {"gpt_val": 1.624}


def test_torch_and_numpy_scalars_are_recorded_as_numbers(tmp_path):
    import numpy as np
    import torch

    results = ChapterResults("ch01", folder=tmp_path)
    results.record("a", torch.tensor(2.5))
    results.record("b", np.float32(0.5))
    results.record("c", np.int64(7))
    assert results.values == {"a": 2.5, "b": 0.5, "c": 7}


def test_what_is_glued_is_the_plain_number(tmp_path, monkeypatch):
    """The page formats the glued value ({glue:text}`ch01_a:.3f`): a tensor would reach it as the
    text "tensor(2.5000)", which no format spec can read (a build warning, and a hole in the page)."""
    import numpy as np
    import torch

    import llm_tutorial.results as module

    glued = {}
    monkeypatch.setattr(module, "glue", lambda name, value, display=False: glued.__setitem__(name, value))
    results = ChapterResults("ch01", folder=tmp_path)
    results.update(a=torch.tensor(2.5), b=np.float64(0.25), c=[torch.tensor(1)])
    assert glued == {"ch01_a": 2.5, "ch01_b": 0.25, "ch01_c": [1]}
    assert type(glued["ch01_a"]) is float and type(glued["ch01_b"]) is float


@pytest.mark.parametrize(
    "chapter, name, value, error",
    [
        ("5", "x", 1.0, ValueError),
        ("ch6cg", "x", 1.0, ValueError),
        ("ch06_", "x", 1.0, ValueError),
        ("ch06_cg_x", "x", 1.0, ValueError),
        ("ch06cg_x", "x", 1.0, ValueError),
        ("ch06CG", "x", 1.0, ValueError),
        ("ch05", "Bad-Name", 1.0, ValueError),
        ("ch05", "x", float("nan"), ValueError),
        ("ch05", "x", float("inf"), ValueError),
        ("ch05", "x", object(), TypeError),
    ],
)
def test_bad_input_is_refused(tmp_path, chapter, name, value, error):
    with pytest.raises(error):
        ChapterResults(chapter, folder=tmp_path).record(name, value)


def test_a_section_notebook_records_under_its_own_stem(tmp_path, monkeypatch):
    """A section notebook of chapter 6 ("ch06cg") keeps its own file, beside chapter 6's."""
    monkeypatch.setenv("LLM_TUTORIAL_QUICK", "0")
    ChapterResults("ch06", folder=tmp_path).record("x", 1)
    section = ChapterResults("ch06cg", folder=tmp_path)
    section.record("x", 2)
    assert section.save() == tmp_path / "ch06cg.json"
    assert load_results("ch06cg", folder=tmp_path) == {"x": 2}
    assert not (tmp_path / "ch06.json").exists()


def test_the_same_name_twice_is_an_error(tmp_path):
    results = ChapterResults("ch02", folder=tmp_path)
    results.record("x", 1)
    with pytest.raises(ValueError, match="already recorded"):
        results.record("x", 2)


def test_missing_results_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="full mode"):
        load_results("ch07", folder=tmp_path)


def test_results_folder_is_found_from_a_notebook_folder(tmp_path):
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "book").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert results_folder(tmp_path / "notebooks") == tmp_path / "book" / "results"
    assert results_folder(tmp_path / "book") == tmp_path / "book" / "results"
