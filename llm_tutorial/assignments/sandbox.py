"""A Jupyter kernel for untrusted code, and how to be sure it is gone afterwards.

The grader runs a student's code in a kernel that knows as little as possible about the grader:

- its working folder is a fresh temporary folder, which is also its ``HOME``;
- its environment is scrubbed: a short ``PATH``, ``LANG``, the package's folder on ``PYTHONPATH``
  and a few harmless settings — none of the grader's variables, no path to the teacher's notebook;
- it starts in its own session, under a small *launcher* process, so ``os.getppid()`` is the
  launcher, not the grader; on Linux the launcher is a *child subreaper*, so processes that the
  student's code leaves behind (double forks, ``setsid``) stay its descendants;
- its standard output and error go to a file in the temporary folder, never to the grader's
  terminal, so nothing it prints can pass for the grader's report.

:func:`kill_tree` ends every process the kernel started: the kernel's session and process group,
every descendant of the launcher, and any process that still carries the sandbox's random marker
in its environment or sits in its temporary folder — repeated until none is left.

What this cannot do: the kernel runs with the grader's user rights, so it can read and write what
the grader's user can (see the page for teachers, which gives a container command for that).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import llm_tutorial

MARKER = "LLM_TUTORIAL_SANDBOX"  # environment variable holding this sandbox's random marker

# The launcher: the kernel's parent. Started with ``python -c LAUNCHER kernel-command…``.
LAUNCHER = r"""
import os, signal, subprocess, sys
try:  # Linux: orphaned descendants are re-parented to this process, not to init
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except Exception:
    pass
os.environ.pop("JPY_PARENT_PID", None)  # the grader's process id
signal.signal(signal.SIGINT, lambda *_: None)  # interrupts are for the kernel
kernel = subprocess.Popen(sys.argv[1:])


def children():
    me = str(os.getpid())
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if entry.isdigit() and stat.read().rsplit(")", 1)[1].split()[1] == me:
                    yield int(entry)
        except (OSError, IndexError):
            pass


while True:  # reap the kernel and the orphans handed to us
    try:
        pid, _ = os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        continue
    if pid == kernel.pid:  # the kernel is gone: so is everything it left behind, then so are we
        while True:
            for child in list(children()):
                try:
                    os.kill(child, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.wait()
            except ChildProcessError:
                break
        break
"""

# Variables passed through to the kernel when the grader has them: locale, threads, devices, data.
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
                  "LLM_TUTORIAL_DATA", "SYSTEMROOT")


def kernel_environment(workdir: Path, marker: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's whole environment: nothing of the grader's but what the list above names."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    package_root = str(Path(llm_tutorial.__file__).resolve().parents[1])
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "PYTHONPATH": package_root,  # the same llm_tutorial as the grader's
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "JUPYTER_PLATFORM_DIRS": "1",
        MARKER: marker,
    })
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra or {})
    return env


class SandboxError(RuntimeError):
    """The kernel could not be started."""


@dataclass
class Outcome:
    """What became of one cell: ``status`` is ok, error, timeout or died."""

    status: str
    error: str = ""  # "Name: value" of the exception when status is error

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _quiet_client_class():
    """An nbclient client that keeps only error outputs: what a student prints is never read."""
    from nbclient import NotebookClient

    class QuietClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] != "error":
                return None
            return super().output(outs, msg, display_id, cell_index)

    return QuietClient


def _launcher_manager_class():
    from jupyter_client import AsyncKernelManager

    class LauncherKernelManager(AsyncKernelManager):
        """Starts the kernel under the launcher (see LAUNCHER)."""

        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-c", LAUNCHER, *super().format_kernel_cmd(extra_arguments)]

    return LauncherKernelManager


class Sandbox:
    """One untrusted kernel at a time in a temporary folder; ``with Sandbox() as box: box.run(code)``.

    ``run`` executes code with a time limit and says what became of it; after a timeout or a
    dead kernel, ``restart`` kills everything and starts a fresh kernel in the same folder.
    """

    def __init__(self, env: dict[str, str] | None = None):
        self.extra_env = env or {}
        self.workdir: Path | None = None
        self.marker = secrets.token_hex(16)
        self._client = None
        self._launcher_pid: int | None = None

    def __enter__(self) -> "Sandbox":
        self.workdir = Path(tempfile.mkdtemp(prefix="grading-")).resolve()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> None:
        import nbformat

        nb = nbformat.v4.new_notebook()
        km = _launcher_manager_class()(kernel_name="python3")
        km.connection_file = str(self.workdir / ".kernel-connection.json")
        self._client = _quiet_client_class()(nb, km=km, timeout=60, allow_errors=True, kernel_name="python3",
                                             shutdown_kernel="immediate")
        log = open(self.workdir / ".kernel-output.log", "ab")  # the kernel's own stdout and stderr
        try:
            self._client.start_new_kernel(env=kernel_environment(self.workdir, self.marker, self.extra_env),
                                          cwd=str(self.workdir), stdout=log, stderr=log)
            self._client.start_new_kernel_client()
        except Exception as error:  # no ipykernel, no kernel spec, a kernel that died at start
            raise SandboxError(f"{type(error).__name__}: {error}") from None
        finally:
            log.close()
        self._launcher_pid = km.provisioner.process.pid

    def run(self, source: str, timeout: float) -> Outcome:
        """Execute ``source`` as one cell; never raises for what the code does."""
        import nbformat
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        cell = nbformat.v4.new_code_cell(source)
        self._client.nb.cells = [cell]
        self._client.timeout = max(1, int(round(timeout + 0.49)))
        try:
            self._client.execute_cell(cell, 0)
        except CellTimeoutError:
            return Outcome("timeout")
        except DeadKernelError:
            return Outcome("died")
        except Exception as error:  # the kernel's messages stopped making sense: treat it as dead
            return Outcome("died", f"{type(error).__name__}: {error}")
        for output in cell.outputs:
            if output.get("output_type") == "error":
                return Outcome("error", f"{output['ename']}: {output['evalue']}".strip())
        return Outcome("ok")

    def restart(self) -> None:
        self.stop()
        self.marker = secrets.token_hex(16)
        self.start()

    def stop(self) -> None:
        """Kill the kernel and every process it started; close the connection."""
        client, self._client = self._client, None
        if self._launcher_pid is not None:
            kill_tree(self._launcher_pid, self.marker, self.workdir)
        if client is not None:
            try:
                client._cleanup_kernel()  # nbclient's own: shut down, close channels, remove files
            except Exception:
                pass
        if self._launcher_pid is not None:
            kill_tree(self._launcher_pid, self.marker, self.workdir)
            self._launcher_pid = None


# --- ending every process a sandbox started ------------------------------------------------------

def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent id, process group, session) from /proc, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def _carries_marker(pid: int, marker: str, workdir: Path | None) -> bool:
    try:
        if f"{MARKER}={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
            return True
    except OSError:
        pass
    if workdir is not None:
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            return cwd == str(workdir) or cwd.startswith(str(workdir) + os.sep)
        except OSError:
            pass
    return False


def _ancestors() -> set[int]:
    """This process and its ancestors: never to be killed."""
    keep, pid = set(), os.getpid()
    while pid > 1 and pid not in keep:
        keep.add(pid)
        stat = _proc_stat(pid)
        if stat is None:
            break
        pid = stat[1]
    return keep


def sandbox_processes(launcher: int, marker: str, workdir: Path | None) -> set[int]:
    """Live processes that belong to a sandbox (Linux): its session and group, the launcher's
    descendants, and processes carrying its marker or sitting in its folder."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None and stat[0] not in "ZX":
            table[int(entry)] = stat
    found = {pid for pid, (_, _, group, session) in table.items()
             if session == launcher or group == launcher or pid == launcher or _carries_marker(pid, marker, workdir)}
    grew = True
    while grew:  # and every descendant of those
        more = {pid for pid, (_, parent, _, _) in table.items() if parent in found and pid not in found}
        found |= more
        grew = bool(more)
    return found - _ancestors()


def kill_tree(launcher: int, marker: str, workdir: Path | None = None, rounds: int = 100) -> None:
    """SIGKILL everything the sandbox started, again and again until nothing of it is alive."""
    if not Path("/proc/self/stat").exists():  # not Linux: the session is all we know
        for kill in (getattr(os, "killpg", None), os.kill):
            try:
                if kill is not None:
                    kill(launcher, getattr(signal, "SIGKILL", signal.SIGTERM))
            except OSError:
                pass
        return
    for _ in range(rounds):
        alive = sandbox_processes(launcher, marker, workdir)
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)
