#!/usr/bin/env python3
"""The book's two set-up commands, for a fresh machine with Python 3.10+:

    python3 tasks.py book    build the book into _build/html
    python3 tasks.py test    run the package's tests, every notebook (quick mode), the book build
                             with warnings as errors, and the rendering check in headless Chromium

Each creates or reuses the virtual environment .venv and installs the package with the versions
pinned in constraints.txt. Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH_PIN = "torch==2.13.0"
EXTRAS = {"book": "book", "test": "book,test,kernels,interop,coursework"}

# Mermaid is served from the book itself (no page may load from another host). Its ESM build comes
# from the npm registry's tarball, checked against the registry's published sha512.
MERMAID_VERSION = "11.12.1"
MERMAID_URL = f"https://registry.npmjs.org/mermaid/-/mermaid-{MERMAID_VERSION}.tgz"
MERMAID_SHA512 = "UlIZrRariB11TY1RtTgUWp65tphtBv4CSq7vyS2ZZ2TgoMjs2nloq+wFqxiwcxlhHUvs7DPGgMjs2aeQxz5h9g=="
MERMAID_DIR = ROOT / "_static" / "mermaid"


def say(message: str) -> None:
    print(f"[tasks] {message}", flush=True)


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    say(" ".join(str(part) for part in command))
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, env=env)


def venv_bin(name: str) -> Path:
    folder = VENV / ("Scripts" if os.name == "nt" else "bin")
    return folder / (name + (".exe" if os.name == "nt" else ""))


def ensure_environment(extras: str) -> None:
    """Create .venv if needed and install the pinned versions; skip when nothing changed."""
    if not venv_bin("python").exists():
        run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / ".llm-tutorial-installed"
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes() + extras.encode()
    ).hexdigest()
    installed = stamp.read_text().split() if stamp.exists() else []
    if wanted in installed:
        return
    pip = (venv_bin("python"), "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt")
    run(*pip, TORCH_PIN)  # first and alone, so nothing else can pull a different torch build
    run(*pip, "-e", f".[{extras}]")
    stamp.write_text(" ".join([*installed, wanted]))


def ensure_mermaid() -> None:
    if (MERMAID_DIR / "mermaid.esm.min.mjs").exists():
        return
    say(f"fetching mermaid {MERMAID_VERSION} from the npm registry")
    with urllib.request.urlopen(MERMAID_URL, timeout=120) as response:
        payload = response.read()
    digest = base64.b64encode(hashlib.sha512(payload).digest()).decode()
    if digest != MERMAID_SHA512:
        sys.exit(f"mermaid tarball checksum mismatch: got {digest}, expected {MERMAID_SHA512}")
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/dist/")
            wanted = name == "mermaid.esm.min.mjs" or name.startswith("chunks/mermaid.esm.min/")
            if member.isfile() and wanted and name.endswith(".mjs"):
                target = MERMAID_DIR / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())


def build_book(strict: bool) -> None:
    ensure_mermaid()
    flags = ("-W", "-n", "--keep-going") if strict else ()
    run(venv_bin("jupyter-book"), "build", ".", "--builder", "html", *flags)
    say(f"book built: {ROOT / '_build' / 'html' / 'index.html'}")


def ensure_chromium() -> str | None:
    """Chromium for the rendering check: found, or installed with apt when possible."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium")
        return shutil.which("chromium")
    return None


def book(_: argparse.Namespace) -> None:
    ensure_environment(EXTRAS["book"])
    build_book(strict=False)


def execute_notebooks(folder: Path, env: dict[str, str]) -> None:
    """Every notebook in ``folder`` top to bottom under nbval, in quick mode."""
    # Two notebooks run at once, one per core: one math thread each avoids oversubscription.
    quick = {**env, "LLM_TUTORIAL_QUICK": "1", "OMP_NUM_THREADS": "1"}
    run(venv_bin("python"), "-m", "pytest", "--nbval-lax", folder, "-q", "-n", "2", "--dist", "loadfile",
        "--nbval-cell-timeout=600", "-p", "no:cacheprovider", "--rootdir", ROOT, env=quick)


def test(args: argparse.Namespace) -> None:
    started = time.monotonic()
    ensure_environment(EXTRAS["test"])
    python = venv_bin("python")
    env = dict(os.environ)
    shared_data = ROOT.parent / "shared" / "data"
    if "LLM_TUTORIAL_DATA" not in env and shared_data.is_dir():
        env["LLM_TUTORIAL_DATA"] = str(shared_data)
    run(python, "-m", "pytest", "tests", "--ignore=tests/rendering", "-q", "-n", "2", "--dist", "loadfile", env=env)
    execute_notebooks(ROOT / "notebooks", env)
    # The notebooks handed to students (solutions stubbed, hidden tests removed) must run too.
    students = ROOT / "_build" / "student"
    shutil.rmtree(students, ignore_errors=True)
    run(python, "-m", "llm_tutorial.assignments", "build", "all", "--out", students)
    execute_notebooks(students, env)
    build_book(strict=True)
    chromium = ensure_chromium()
    render_env = {**env, "LLM_TUTORIAL_CHROMIUM": chromium or ""}
    run(python, "-m", "pytest", "tests/rendering", "-q", "-rs", env=render_env)
    say(f"all checks passed in {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("book", help="build the book into _build/html").set_defaults(func=book)
    commands.add_parser("test", help="run every test, notebook and book check").set_defaults(func=test)
    args = parser.parse_args()
    try:
        args.func(args)
    except subprocess.CalledProcessError as error:
        sys.exit(f"[tasks] failed: {' '.join(map(str, error.cmd))} (exit {error.returncode})")


if __name__ == "__main__":
    main()
