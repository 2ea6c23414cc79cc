"""environment.yml (conda, Binder), pyproject.toml and constraints.txt must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
