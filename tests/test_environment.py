"""The environments readers get: environment.yml (conda, Binder), pyproject.toml and constraints.txt agree;
the README's first command installs everything every notebook imports; Colab installs the book's release
without replacing Colab's CUDA build of PyTorch."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import types
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        listed += extra
    return {normalise(Requirement(line).name): Requirement(line) for line in listed}


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"constraints.txt must pin exactly: {line}"
            pins[normalise(requirement.name)] = specifier.version
    return pins


def environment_pins() -> dict[str, Requirement]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    return {normalise(Requirement(line).name): Requirement(line) for line in pip_section}


def test_environment_lists_exactly_the_project_dependencies():
    assert set(environment_pins()) == set(pyproject_requirements())


def test_environment_pins_equal_constraints_and_satisfy_pyproject():
    pins, wanted = constraint_pins(), pyproject_requirements()
    for name, requirement in environment_pins().items():
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"environment.yml must pin {name} exactly"
        assert specifier.version == pins[name], f"{name}: environment.yml {specifier.version}, constraints {pins[name]}"
        assert wanted[name].specifier.contains(specifier.version, prereleases=True), (
            f"{name}=={specifier.version} does not satisfy pyproject's {wanted[name]}"
        )
        assert str(requirement.marker or "") == str(wanted[name].marker or ""), f"{name}: platform markers differ"


def test_constraints_pin_every_project_dependency_and_torch_2_13():
    pins = constraint_pins()
    assert set(pyproject_requirements()) <= set(pins)
    assert pins["torch"] == "2.13.0"


def test_python_versions_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert Requirement(f"python{project['requires-python']}").specifier.contains(conda_python.split("=")[1])


# ------------------------------------------------------------------- the first command sets up every notebook


def load_tasks():
    """tasks.py, the README's commands, imported as a module (it runs on the standard library alone)."""
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source`` (IPython magics and shell lines dropped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    modules = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != "llm_tutorial" and m != "__future__"}


def notebook_imports() -> dict[str, set[str]]:
    found = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found[path.stem] = third_party(imported_modules(source))
    return found


def package_imports() -> set[str]:
    """Everything the package imports anywhere, lazily imported optional packages included."""
    modules = set()
    for path in (ROOT / "llm_tutorial").rglob("*.py"):
        modules |= imported_modules(path.read_text(encoding="utf-8"))
    return third_party(modules)


def dependency_closure(extras: tuple[str, ...]) -> set[str]:
    """Normalised names of every distribution ``pip install .[extras]`` brings, read from pyproject.toml and
    then the installed packages' own metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [(Requirement(line), "") for line in project["dependencies"]]
    for extra in extras:
        pending += [(Requirement(line), extra) for line in project["optional-dependencies"][extra]]
    seen: set[str] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = normalise(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(requirement.name) or []:
            for wanted in requirement.extras or {""}:
                pending.append((Requirement(line), wanted))
    return seen


def test_the_first_command_installs_the_reader_extras_and_says_how_to_open_jupyterlab(monkeypatch, capsys):
    tasks = load_tasks()
    done = []
    monkeypatch.setattr(tasks, "ensure_environment", done.append)
    monkeypatch.setattr(tasks, "build_book", lambda strict: done.append(f"build strict={strict}"))
    tasks.book(None)
    assert done == [tasks.READER_EXTRAS, "build strict=False"]
    assert set(tasks.READER_EXTRAS) == {"book", "interop", "kernels", "coursework"}
    assert set(tasks.TEST_EXTRAS) == {*tasks.READER_EXTRAS, "test"}
    printed = capsys.readouterr().out
    assert "jupyter lab notebooks/" in printed and "-m llm_tutorial doctor" in printed
    torch_first, package = tasks.install_commands("python", tasks.READER_EXTRAS)
    assert torch_first[-1] == "torch==2.13.0" and "-c" in torch_first and "-c" in package
    assert package[-2:] == ["-e", f"{ROOT}[book,interop,kernels,coursework]"]


def test_every_module_a_notebook_imports_comes_with_the_first_command():
    """Each third-party module a notebook (or the package, lazily) imports is provided by a distribution
    that ``tasks.py book`` installs, and is importable here."""
    tasks = load_tasks()
    provided = dependency_closure(tasks.READER_EXTRAS)
    owners = metadata.packages_distributions()
    imports = notebook_imports()
    assert {"sacrebleu", "transformers", "tiktoken", "triton"} <= set().union(*imports.values())  # the parser works
    wanted = {(module, stem) for stem, modules in imports.items() for module in modules}
    wanted |= {(module, "the package") for module in package_imports()}
    for module, where in sorted(wanted):
        if module == "triton" and sys.platform != "linux":
            continue  # Triton exists for Linux only; chapter 5 says so
        assert importlib.util.find_spec(module) is not None, f"{where} imports {module}, which is not installed"
        distributions = {normalise(d) for d in owners.get(module, [])}
        assert distributions & provided, (
            f"{where} imports {module} (from {sorted(distributions)}), which `python3 tasks.py book` does not "
            f"install: add it to an extra in tasks.READER_EXTRAS {tasks.READER_EXTRAS}"
        )


def test_without_the_extras_the_notebooks_would_not_import():
    """The check above can fail: the core dependencies alone miss what chapters 5-7 import."""
    core = dependency_closure(())
    owners = metadata.packages_distributions()
    imported = set().union(*notebook_imports().values())
    assert {m for m in imported if not {normalise(d) for d in owners.get(m, [])} & core} >= {"sacrebleu", "tiktoken"}


def test_every_conda_instruction_installs_the_package_too():
    for path in (ROOT / "README.md", ROOT / "book" / "setup.md", ROOT / "environment.yml", ROOT / "postBuild",
                 ROOT / "notebooks" / "ch05_project.ipynb"):
        text = path.read_text(encoding="utf-8")
        if "conda env create" in text or path.name == "postBuild":
            assert "pip install --no-deps -e ." in text, f"{path.name}: conda set-up without `pip install --no-deps -e .`"


# ------------------------------------------------------------------------------------- Colab


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def colab_cells() -> dict[str, str]:
    cells = {}
    for path in sorted((ROOT / "notebooks").glob("ch*.ipynb")):
        code = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
        assert code[0]["outputs"] == [], f"{path.stem}: the Colab cell does nothing elsewhere and has no output"
        cells[path.stem] = "".join(code[0]["source"])
    return cells


def test_the_release_is_pyprojects_version_and_every_notebook_installs_it():
    release = config()["repository"]["release"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert release == f"v{version}"
    for stem, source in colab_cells().items():
        assert f'RELEASE = "{release}"' in source, f"{stem}: the Colab cell must install {release}"
        assert "@{RELEASE}" in source, f"{stem}: the Colab cell must install at the release, not main's head"


def run_colab_cell(source: str, monkeypatch, tmp_path) -> list[str]:
    """Run a Colab cell as on Colab (the package not installed), recording the pip command instead of running it."""
    commands = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_tutorial" else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command))
    files = {}

    def fake_open(path, mode="r", *args, **kwargs):  # the cell's files go to tmp_path, not the machine's /tmp
        files[path] = tmp_path / Path(path).name
        return open(files[path], mode, *args, **kwargs)

    exec(compile(source, "colab-cell", "exec"), {"open": fake_open, "__name__": "__main__"})
    (command,) = commands
    return [str(files.get(part, part)) for part in command]


def test_off_colab_the_cell_does_nothing(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("the cell ran a command off Colab"))
    for source in colab_cells().values():
        exec(compile(source, "colab-cell", "exec"), {"__name__": "__main__"})


def fake_colab_environment(folder: Path, torch_version: str, triton_version: str) -> Path:
    """A Python environment that holds what Colab has: this machine's packages as installed metadata, but
    Colab's CUDA torch (which pins its Triton), and neither triton 3.9 nor the book's package."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next(folder.glob("lib/python3*/site-packages")) if os.name != "nt" else folder / "Lib" / "site-packages"

    def fake(name: str, version: str, requires: list[str]) -> None:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")

    skip = {"torch", "triton", "llm-tutorial", "pip", "setuptools"}
    for distribution in metadata.distributions():
        name = normalise(distribution.metadata["Name"])
        if name not in skip and not name.startswith("nvidia"):
            info = site / f"{name.replace('-', '_')}-{distribution.version}.dist-info"
            if not info.exists():
                info.mkdir()
                fallback = f"Name: {name}\nVersion: {distribution.version}\n"
                (info / "METADATA").write_text(distribution.read_text("METADATA") or fallback)
                (info / "INSTALLER").write_text("pip\n")
                (info / "RECORD").write_text("")
    fake("torch", torch_version, [f'triton=={triton_version}; platform_system == "Linux"', "filelock", "sympy>=1.13.3"])
    fake("triton", triton_version, [])
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def metadata_wheel(folder: Path) -> Path:
    """A wheel of the book's package that holds only its metadata, written from pyproject.toml: what pip
    resolves for ``git+REPOSITORY``, without the seconds a build of the real wheel takes."""
    import zipfile

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = ["Metadata-Version: 2.1", "Name: llm-tutorial", f"Version: {project['version']}",
             f"Requires-Python: {project['requires-python']}", *(f"Requires-Dist: {r}" for r in project["dependencies"])]
    for extra, requirements in project["optional-dependencies"].items():
        lines.append(f"Provides-Extra: {extra}")
        for line in requirements:
            requirement, _, marker = line.partition(";")
            condition = f'extra == "{extra}"'
            condition = f"({marker.strip()}) and {condition}" if marker.strip() else condition
            lines.append(f"Requires-Dist: {requirement.strip()}; {condition}")
    info = f"llm_tutorial-{project['version']}.dist-info"
    wheel = folder / f"llm_tutorial-{project['version']}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{info}/METADATA", "\n".join(lines) + "\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def install_plan(python: Path, command: list[str], source: Path, report: Path) -> set[str]:
    """What pip would install for the cell's command, with the book's package taken from ``source`` (a wheel)."""
    arguments = command[command.index("install") + 1:]
    arguments = [re.sub(r"@ git\+\S+$", f"@ {source.as_uri()}", part) for part in arguments]
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # only the fake environment
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet",
                           "--report", str(report), *arguments], capture_output=True, text=True, env=clean)
    if done.returncode != 0:
        return {"<pip could not resolve: " + done.stderr.strip().splitlines()[-1] + ">"}
    return {normalise(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(sys.platform != "linux", reason="Colab runs Linux; the fake CUDA torch pins Triton on Linux")
@pytest.mark.skipif(not pypi_reachable(), reason="resolving an install plan needs the package index (PyPI)")
def test_colab_install_keeps_colabs_cuda_torch(monkeypatch, tmp_path):
    """Resolve (``pip install --dry-run --report``) each distinct Colab install command against an environment
    that already holds a CUDA torch pinning an older Triton, as Colab does: nothing may replace that torch or
    its Triton (about 3 s). The control — the old cell, ``[interop,kernels]`` without the constraint — does
    replace it (about 15 s: pip backtracks through torch releases); it shows the check can fail."""
    source = metadata_wheel(tmp_path / "wheel")
    python = fake_colab_environment(tmp_path / "colab", "2.8.0+cu126", "3.4.0")
    commands = {}
    real_version = metadata.version
    for stem, cell in colab_cells().items():
        with monkeypatch.context() as colab:
            colab.setattr(metadata, "version", lambda name: "2.8.0+cu126" if name == "torch" else real_version(name))
            commands.setdefault(tuple(run_colab_cell(cell, colab, tmp_path)), stem)
    for command, stem in commands.items():
        assert (tmp_path / "keep-colab-torch.txt").read_text() == "torch==2.8.0+cu126\n"
        plan = install_plan(python, list(command), source, tmp_path / "plan.json")
        assert "llm-tutorial" in plan, f"{stem}: {plan}"
        replaced = {name for name in plan if name in {"torch", "triton"} or name.startswith("nvidia")}
        assert not replaced, f"{stem}'s Colab cell would replace Colab's {sorted(replaced)}"
    old = ["-q", "llm-tutorial[interop,kernels] @ git+https://example.invalid/repo"]
    assert "torch" in install_plan(python, ["install", *old], source, tmp_path / "old.json")


# ------------------------------------------------------------------------------ offline, without data


def test_without_data_and_network_the_test_run_stops_once_with_what_to_do(tmp_path):
    """An empty data folder, an empty cache and no network (every download goes to a closed proxy port):
    pytest stops at the start with one message instead of a failure per test that reads data."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}  # not an xdist worker
    env = {**inherited, "LLM_TUTORIAL_DATA": str(tmp_path / "empty"), "LLM_TUTORIAL_CACHE": str(tmp_path / "cache"),
           "https_proxy": f"http://127.0.0.1:{closed}", "HTTPS_PROXY": f"http://127.0.0.1:{closed}",
           "PYTHONPATH": str(ROOT)}
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 4, output  # pytest's "usage error": nothing ran
    assert output.count("the tests need the book's data files") == 1
    assert "python -m llm_tutorial data prepare FOLDER" in output
    from llm_tutorial.data import CORPORA

    assert all(corpus.filename in output for corpus in CORPORA.values())
    assert not re.search(r"\d+ (passed|failed)", output)
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------ run times


def test_the_run_time_table_of_the_set_up_page_is_up_to_date(monkeypatch, tmp_path):
    tasks = load_tasks()
    monkeypatch.setattr(tasks, "QUICK_TIMINGS", tmp_path / "absent.xml")
    tasks.update_runtimes(types.SimpleNamespace(check=True))  # exits with a message when out of date
    page = (ROOT / "book" / "setup.md").read_text(encoding="utf-8")
    assert page.count(tasks.TABLE_BEGIN) == 1 and "| `ch05_project` |" in page


def test_run_times_are_read_from_cell_timings_and_the_junit_report(tmp_path):
    tasks = load_tasks()
    cells = [{"cell_type": "markdown", "metadata": {}, "source": []}]
    for start, end in (("2026-01-01T10:00:00.5Z", "2026-01-01T10:00:02Z"),
                       ("2026-01-01T10:01:00Z", "2026-01-01T10:03:30.25Z")):
        cells.append({"cell_type": "code", "metadata": {"execution": {"iopub.execute_input": start,
                                                                        "shell.execute_reply": end}}})
    notebook = tmp_path / "ch99_x.ipynb"
    notebook.write_text(json.dumps({"cells": cells}))
    assert tasks.full_run_seconds(notebook) == 209.75
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}}]}))
    assert tasks.full_run_seconds(notebook) is None
    report = tmp_path / "quick.xml"
    report.write_text('<testsuites><testsuite><testcase classname="notebooks.ch01_a.ipynb" name="Cell 0" time="1.5"/>'
                      '<testcase classname="notebooks.ch01_a.ipynb" name="Cell 1" time="2.25"/>'
                      '<testcase classname="notebooks.ch02_b.ipynb" name="Cell 0" time="4"/></testsuite></testsuites>')
    assert tasks.quick_run_seconds(report) == {"ch01_a": 3.75, "ch02_b": 4.0}
    assert [tasks._duration(s) for s in (None, 42.4, 150)] == ["not recorded", "42 s", "2.5 min"]


def test_workflows_run_ci_on_every_push_and_publish_the_release():
    workflows = ROOT / ".github" / "workflows"
    ci = yaml.safe_load((workflows / "ci.yml").read_text())
    triggers = ci[True]  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers and triggers["push"] in (None, {})  # every branch, every push
    steps = [step.get("run", "") for job in ci["jobs"].values() for step in job["steps"]]
    assert ".ci/run" in steps
    pages = yaml.safe_load((workflows / "pages.yml").read_text())
    assert pages[True]["push"]["tags"] == ["v*"]
    runs = [step.get("run", "") for step in pages["jobs"]["build"]["steps"]]
    uses = [step.get("uses", "") for job in pages["jobs"].values() for step in job["steps"]]
    assert "python3 tasks.py book" in runs and any("repository.release" in run for run in runs)
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert pages["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
