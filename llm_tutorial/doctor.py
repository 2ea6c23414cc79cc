"""The environment doctor: what the book needs, what this machine has, and how to fix the difference.

``python -m llm_tutorial doctor`` (or :func:`diagnose` in a notebook) checks, in order:

* Python, against the package's ``requires-python``;
* PyTorch: its version, the device the book will use (CUDA, Apple's MPS or the CPU) and its threads;
* every package the book depends on, optional ones included, installed version against the version
  the book was tested with (``constraints.txt`` in a checkout; the package's own requirement
  ranges when it was installed from a wheel, where that file does not exist);
* each data file: on disk (in ``$LLM_TUTORIAL_DATA`` or the cache), with the right checksum;
* Triton, and whether its interpreter runs a kernel here (chapter 5 runs its kernels that way on a CPU);
* Chromium, which only the book's rendering check (``tasks.py test``) uses.

Every missing piece comes with the command that fixes it. The report never prints a path of the
machine it runs on (a notebook's published output must not show the build machine's folders).
:attr:`DoctorReport.ok` is false — and the command exits with 1 — when something a chapter needs is
missing or wrong; what only building the book or running its tests needs is reported, not counted.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "llm-tutorial"
# Extras a chapter imports (checked against the notebooks by tests/test_environment.py); the others
# (``book``: Jupyter Book and JupyterLab, ``test``: pytest and nbval) build and test the book.
CHAPTER_EXTRAS = ("interop", "kernels", "coursework")
CHROMIUM_ENV = "LLM_TUTORIAL_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

OK, NOTE, MISSING, WRONG = "ok", "note", "missing", "wrong"

# A tiny kernel run in a fresh process under TRITON_INTERPRET=1: importing Triton here would fix this
# process's compile-or-interpret choice before a notebook had the chance to make it.
_INTERPRETER_PROBE = textwrap.dedent("""
    import torch, triton, triton.language as tl

    @triton.jit
    def add_one(x, out, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        tl.store(out + offsets, tl.load(x + offsets, mask=mask) + 1, mask=mask)

    x = torch.arange(37, dtype=torch.float32)
    out = torch.empty_like(x)
    add_one[(3,)](x, out, 37, BLOCK=16)
    assert torch.equal(out, x + 1)
""")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # OK, NOTE (works, but read this), MISSING or WRONG
    detail: str
    fix: str | None = None  # the command (or step) that fixes it
    needed: bool = True  # a chapter needs it: a MISSING or WRONG here makes the report fail


@dataclass
class DoctorReport:
    """The checks, in sections; ``str(report)`` is the printed report."""

    sections: dict[str, list[Check]] = field(default_factory=dict)

    @property
    def checks(self) -> list[Check]:
        return [check for checks in self.sections.values() for check in checks]

    @property
    def problems(self) -> list[Check]:
        """What a chapter needs and this machine lacks."""
        return [c for c in self.checks if c.needed and c.status in (MISSING, WRONG)]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        width = max(len(check.name) for check in self.checks)
        lines = []
        for title, checks in self.sections.items():
            lines.append(title)
            for check in checks:
                lines.append(f"  {check.status:<7}  {check.name:<{width}}  {check.detail}")
                if check.fix and check.status != OK:
                    lines.append(f"  {'':<7}  {'':<{width}}  fix: {check.fix}")
        if self.ok:
            lines.append("Everything a chapter needs is here.")
        else:
            names = ", ".join(check.name for check in self.problems)
            lines.append(f"Missing or wrong for the chapters: {names}. Run the fix shown beside each.")
        return "\n".join(lines)


def diagnose(*, offline: bool = False, probe_triton: bool = True) -> DoctorReport:
    """Check this machine; see the module docstring. ``offline=True`` counts a data file that is not
    on disk as missing (it cannot be downloaded on first use); ``probe_triton=False`` skips running a
    kernel in Triton's interpreter (about two seconds)."""
    project = _Project.find()
    report = DoctorReport()
    report.sections["Python and PyTorch"] = [_python(project), *_torch(project)]
    report.sections["Packages"] = _packages(project)
    report.sections["Data"] = _data(offline)
    report.sections["Kernels and tools"] = [_triton(project, probe_triton), _chromium()]
    return report


# --------------------------------------------------------------------------------------- the project


@dataclass
class _Project:
    """What the book's package asks for: its requirements, and the pins of a checkout if there is one."""

    requirements: list[str]  # PEP 508 strings, extras as ``; extra == "name"`` markers
    requires_python: str | None
    pins: dict[str, str]  # normalised name -> exact version (constraints.txt); empty without a checkout
    checkout: bool  # installed from a clone (editable): constraints.txt and tasks.py are at hand

    @classmethod
    def find(cls) -> _Project:
        root = _package_root()
        checkout = (root / "pyproject.toml").is_file() and (root / "constraints.txt").is_file()
        pins = _read_pins(root / "constraints.txt") if checkout else {}
        try:
            meta = metadata.metadata(DISTRIBUTION)
            return cls(list(meta.get_all("Requires-Dist") or []), meta.get("Requires-Python"), pins, checkout)
        except metadata.PackageNotFoundError:
            pass
        if checkout:  # importable from a clone that was never pip-installed: read pyproject.toml itself
            try:
                import tomllib
            except ImportError:  # Python 3.10
                tomllib = None
            if tomllib is not None:
                project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
                requirements = list(project.get("dependencies", []))
                for extra, listed in project.get("optional-dependencies", {}).items():
                    requirements += [_with_extra(line, extra) for line in listed]
                return cls(requirements, project.get("requires-python"), pins, checkout)
        return cls([], None, pins, checkout)

    def install(self, extra: str | None = None) -> str:
        """The command that installs the package (with ``extra``) the way the book does."""
        if self.checkout:
            if extra in (None, "book", *CHAPTER_EXTRAS):
                return "python3 tasks.py book   (in the repository: sets up everything a reader needs)"
            return "python3 tasks.py check  (in the repository)"
        target = f"{DISTRIBUTION}[{extra}]" if extra else DISTRIBUTION
        return f'python -m pip install "{target}"'


def _package_root() -> Path:
    """The folder above the package: a clone's root in an editable install, site-packages otherwise."""
    return Path(__file__).resolve().parents[1]


def _with_extra(line: str, extra: str) -> str:
    """A requirement of an extra, written as the package metadata writes it."""
    requirement, _, marker = line.partition(";")
    condition = f'extra == "{extra}"'
    if marker.strip():
        return f"{requirement.strip()}; ({marker.strip()}) and {condition}"
    return f"{requirement.strip()}; {condition}"


def _read_pins(path: Path) -> dict[str, str]:
    from packaging.requirements import InvalidRequirement, Requirement

    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        try:
            requirement = Requirement(line) if line else None
        except InvalidRequirement:
            continue
        specifiers = list(requirement.specifier) if requirement else []
        if len(specifiers) == 1 and specifiers[0].operator == "==":
            pins[_normalise(requirement.name)] = specifiers[0].version
    return pins


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _same_release(installed: str, pinned: str) -> bool:
    """``2.13.0+cpu`` is the tested ``2.13.0``: the local label names the build, not the release."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed).public == Version(pinned).public
    except InvalidVersion:
        return installed == pinned


# --------------------------------------------------------------------------------------- the checks


def _python(project: _Project) -> Check:
    from packaging.specifiers import SpecifierSet

    version = platform.python_version()
    wanted = project.requires_python or ">=3.10"
    if SpecifierSet(wanted).contains(version, prereleases=True):
        return Check("python", OK, f"{version} on {platform.system()} {platform.machine()} (needs {wanted})")
    return Check("python", WRONG, f"{version} (the book needs {wanted})",
                 fix="install a newer Python (python.org, your package manager, or conda) and set up again")


def _torch(project: _Project) -> list[Check]:
    installed = _installed("torch")
    if installed is None:
        return [Check("torch", MISSING, "not installed", fix=project.install())]
    import torch

    from .runtime import _mps_available, get_device

    pinned = project.pins.get("torch")
    checks = [_versioned("torch", installed, pinned, project, None)]
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU)"
    elif _mps_available():
        device = "mps (Apple GPU)"
    else:
        device = "cpu (no CUDA or MPS: every chapter still runs, training is slower)"
    checks.append(Check("device", OK if str(get_device()) != "cpu" else NOTE, device, needed=False))
    checks.append(Check("threads", OK, f"{torch.get_num_threads()} PyTorch threads on {os.cpu_count()} CPU cores",
                        needed=False))
    return checks


def _versioned(name: str, installed: str, pinned: str | None, project: _Project, extra: str | None,
               wanted: str | None = None, needed: bool = True) -> Check:
    """A package that is installed: its version against the book's pin (or requirement range)."""
    from packaging.specifiers import SpecifierSet

    if wanted and not SpecifierSet(wanted).contains(installed, prereleases=True):
        return Check(name, WRONG, f"{installed}, but the book needs {wanted}", fix=project.install(extra), needed=needed)
    if pinned is None:
        return Check(name, OK, f"{installed} (needs {wanted})" if wanted else installed, needed=needed)
    if _same_release(installed, pinned):
        return Check(name, OK, f"{installed} (tested: {pinned})", needed=needed)
    return Check(name, NOTE, f"{installed}, the book was tested with {pinned}: numbers may differ slightly",
                 fix=project.install(extra), needed=needed)


def _packages(project: _Project) -> list[Check]:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    if not project.requirements:
        return [Check(DISTRIBUTION, MISSING, "the package is not installed, so its requirements are unknown",
                      fix='python -m pip install -e .   (in the repository)')]
    package = Check(DISTRIBUTION, OK, f"{_installed(DISTRIBUTION) or 'not installed, imported from a clone'}"
                    f" ({'a checkout: pins from constraints.txt' if project.checkout else 'installed from a wheel'})",
                    needed=False)
    checks, seen = [package], set()
    for line in project.requirements:
        requirement = Requirement(line)
        extra = _extra_of(requirement)
        name = _normalise(requirement.name)
        if name == "torch" or (name, extra) in seen:
            continue
        seen.add((name, extra))
        environment = {**default_environment(), "sys_platform": sys.platform, "platform_system": platform.system(),
                       "extra": extra or ""}
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue  # not for this platform (Triton off Linux is reported under Kernels)
        needed = extra is None or extra in CHAPTER_EXTRAS
        label = f"{requirement.name} [{extra}]" if extra else requirement.name
        installed = _installed(requirement.name)
        if installed is None:
            why = "a chapter imports it" if needed else f"only for {_purpose(extra)}"
            checks.append(Check(label, MISSING, f"not installed ({why})", fix=project.install(extra), needed=needed))
        else:
            checks.append(_versioned(label, installed, project.pins.get(name), project, extra,
                                     str(requirement.specifier) or None, needed))
    return checks


def _extra_of(requirement) -> str | None:
    marker = str(requirement.marker or "")
    if "extra ==" not in marker:
        return None
    return marker.split("extra ==", 1)[1].strip().strip("()").strip().strip("'\"")


def _purpose(extra: str | None) -> str:
    return {"book": "building the book and JupyterLab", "test": "running the book's tests"}.get(extra or "", "it")


def _data(offline: bool) -> list[Check]:
    from .data.corpora import CORPORA, DATA_ENV, cache_dir, sha256_of
    from .data.prepare import PREPARE_COMMAND

    folders = []
    if os.environ.get(DATA_ENV):
        folders.append((Path(os.environ[DATA_ENV]), f"in ${DATA_ENV}"))
    folders.append((cache_dir(), "cached"))
    checks = []
    for corpus in CORPORA.values():
        found = next(((folder / corpus.filename, where) for folder, where in folders
                      if (folder / corpus.filename).is_file()), None)
        if found is None:
            fix = f"download {corpus.url}, then `{PREPARE_COMMAND}`"
            if offline:
                checks.append(Check(corpus.filename, MISSING, "not on disk, and this machine is offline", fix=fix))
            else:
                checks.append(Check(corpus.filename, NOTE, "not on disk yet: downloaded and checked on first use",
                                    fix=f"offline? {fix}", needed=False))
        elif sha256_of(found[0]) == corpus.sha256:
            checks.append(Check(corpus.filename, OK, f"{found[1]}, checksum ok"))
        else:
            checks.append(Check(corpus.filename, WRONG, f"{found[1]}, but its checksum is not the book's (corrupt or "
                                                        "another version): delete it",
                                fix=f"download {corpus.url} again, then `{PREPARE_COMMAND}`"))
    return checks


def _triton(project: _Project, probe: bool) -> Check:
    if platform.system() != "Linux":
        return Check("triton", NOTE, f"Triton runs on Linux only: on {platform.system()} chapter 5's kernels use "
                                     "their PyTorch reference; its Triton assignment needs Linux or Colab",
                     needed=False)
    installed = _installed("triton")
    if installed is None:
        return Check("triton", MISSING, "not installed (chapter 5's kernels and assignment need it)",
                     fix=project.install("kernels"))
    if not probe:
        return Check("triton", OK, f"{installed} (interpreter not tried)")
    environment = {**os.environ, "TRITON_INTERPRET": "1"}
    try:
        result = subprocess.run([sys.executable, "-c", _INTERPRETER_PROBE], env=environment, capture_output=True,
                                text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return Check("triton", WRONG, f"{installed}, but its interpreter did not finish a tiny kernel in 5 minutes",
                     fix=project.install("kernels"))
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no error message"])[-1]
        return Check("triton", WRONG, f"{installed}, but its interpreter failed on a tiny kernel: {last}",
                     fix=project.install("kernels"))
    mode = "compiled on the GPU, interpreted on the CPU" if _cuda() else "its interpreter runs kernels on the CPU"
    return Check("triton", OK, f"{installed}: {mode}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _chromium() -> Check:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured and Path(configured).is_file():
        return Check("chromium", OK, f"from ${CHROMIUM_ENV} (for the book's rendering check)", needed=False)
    for name in CHROMIUM_NAMES:
        if shutil.which(name):
            return Check("chromium", OK, f"{name} (for the book's rendering check)", needed=False)
    return Check("chromium", MISSING, "not found: only `tasks.py test`'s rendering check needs it (it is skipped)",
                 fix=f"apt-get install chromium (Debian, Ubuntu), or set {CHROMIUM_ENV} to a Chrome or Chromium",
                 needed=False)
