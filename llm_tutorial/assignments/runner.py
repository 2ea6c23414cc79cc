"""The grader's cell inside the student's kernel: build one exercise's namespace, call, write back.

This module runs in the *untrusted* kernel. It only computes: it reads a request (cells to
execute, calls to make) that the grader wrote, executes the cells in a fresh namespace — the set-up
cells, the student's cells of the exercise being graded and the reference cells of every other
exercise, in notebook order (a chapter notebook's student cells leniently: :func:`run_lenient`) —
makes each call and writes what came back (or what was raised) with
:mod:`transport`. Whatever the student's code does to this interpreter can at worst spoil the data
it writes, and the grader judges data on its own side.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import os
import traceback
from typing import Any

import torch

from . import transport


def describe_error(error: BaseException, student_files: set[str]) -> str:
    """"Name: message", and the line of the student's code it came from when there is one."""
    text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    text = text if len(text) <= 400 else text[:400] + "…"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename in student_files]
    if frames:
        frame = frames[-1]
        text += f" (line {frame.lineno} of your {frame.filename.strip('<>')}: {(frame.line or '').strip()[:100]})"
    return text


def _python_source(source: str) -> str:
    """IPython syntax (magics, !commands) turned into Python, as the notebook would run it."""
    shell = getattr(builtins, "get_ipython", lambda: None)()
    return shell.transform_cell(source) if shell is not None else source


def run_lenient(source: str, filename: str, namespace: dict) -> None:
    """Run a student's cell statement by statement, skipping a top-level statement that needs a name
    the grader does not define — of a chapter notebook the grader runs only the imports and
    definitions, so a line such as ``print(my_function(logits))`` after the function, with
    ``logits`` computed by the notebook, is left out instead of costing the exercise. An import or
    a definition that fails this way still fails the cell."""
    for statement in ast.parse(source, filename).body:
        try:
            exec(compile(ast.Module(body=[statement], type_ignores=[]), filename, "exec"), namespace)
        except NameError:
            if isinstance(statement, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                raise


def run(request_path: str, result_path: str) -> None:
    document, tensors = transport.load(request_path)
    # Write once before any student code runs, so that every module the writer needs is imported
    # now: code that breaks imports (by patching builtins.exec, say) then spoils only its own results.
    transport.save(f"{result_path}.warm", {}, {"x": tensors.get("t0", torch.zeros(1)).new_zeros(1)})
    os.unlink(f"{result_path}.warm")
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    student_files: set[str] = set()
    cell_errors = []
    for cell in document["cells"]:
        filename = f"<{cell['name']}>"
        source = _python_source(cell["source"])
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks, inspect, Triton
        if cell["student"]:
            student_files.add(filename)
        try:
            if cell.get("lenient"):
                run_lenient(source, filename, namespace)
            else:
                exec(compile(source, filename, "exec"), namespace)
        except BaseException as error:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
            cell_errors.append({"cell": cell["name"], "student": cell["student"],
                                "error": describe_error(error, student_files)})
    device = namespace.get("device") if document.get("on_device") else None
    if device is not None:  # inputs go where the notebook computes (views are cut after the move)
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    out_tensors: dict = {}
    budget = [transport.MAX_BYTES, transport.MAX_ITEMS]  # for all the results together
    results = []
    for call in document["calls"]:
        function = namespace.get(call["function"])
        if not callable(function):
            results.append({"missing": True})
            continue
        args = transport.decode(call["args"], tensors)
        try:
            value = function(*args)
        except BaseException as error:  # noqa: BLE001
            results.append({"error": describe_error(error, student_files)})
            continue
        try:
            results.append({"value": transport.encode(value, out_tensors, budget)})
        except BaseException as error:  # noqa: BLE001 - a result that will not be read
            results.append({"error": f"the grader could not read what your function returned ({type(error).__name__}: {str(error)[:200]})"})
    transport.save(result_path, {"cells": cell_errors, "results": results}, out_tensors)
