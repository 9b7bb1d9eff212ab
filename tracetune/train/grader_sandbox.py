"""Python graders, run apart: ``grade(sample, item)`` from a grader's ``source`` in a child interpreter that

* has a wall-clock limit (``TIMEOUT_S``; the child's process group is killed past it) and a CPU-time and
  address-space limit (``resource.setrlimit``, set by the child itself before any grader code runs);
* runs in an empty temporary directory with an environment of its own (none of the server's variables, keys or
  settings), in Python's isolated mode;
* cannot open a network connection, start a process, load a C library through ``ctypes``, or open a file other
  than the standard library's and installed packages' (to read) and its own directory's: an audit hook
  (PEP 578), installed before the grader's code is compiled, refuses those events, and hooks cannot be removed.

It is a guard against graders that are wrong or careless (an infinite loop, a stray ``requests.get``, a read of the
store), not a jail for hostile code: the child runs as the server's user. A grader that breaks a rule raises
``PermissionError`` inside ``grade``, which fails that sample (reward 0, the message in the result).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

TIMEOUT_S = 5.0
MEMORY_BYTES = 1 << 30  # the child's address space: the interpreter (and numpy, if the grader imports it) fits
OUTPUT_BYTES = 1 << 20

_BOOTSTRAP = r"""
import io, json, os, resource, sys, sysconfig, traceback
limit = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit["memory"], limit["memory"]))
resource.setrlimit(resource.RLIMIT_CPU, (limit["cpu"], limit["cpu"] + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit["file"], limit["file"]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
request = json.loads(sys.stdin.read())
readable = tuple(sorted({os.path.realpath(p) + os.sep for k, p in sysconfig.get_paths().items()
                         if k in ("stdlib", "platstdlib", "purelib", "platlib")}))
work = os.path.realpath(os.getcwd()) + os.sep
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
REFUSED = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
           "os.kill", "os.killpg", "pty.", "ctypes.", "_ctypes.", "mmap.", "os.chdir", "os.chroot", "webbrowser.")
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        real = os.path.realpath(os.fsdecode(path))
        if (real + os.sep).startswith(work):
            return
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE)
        if not writes and (real + os.sep).startswith(readable):
            return
        raise PermissionError(f"a python grader may not open {os.fsdecode(path)!r}")
    if event == "import" and args[0] in ("ctypes", "_ctypes", "cffi", "_cffi_backend"):
        raise ImportError(f"a python grader may not import {args[0]}")  # numpy copes without ctypes
    if event.startswith(REFUSED):
        raise PermissionError(f"a python grader may not use {event} (no network, no processes)")
real_stdout = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr = io.StringIO()
sys.addaudithook(hook)
try:
    namespace = {"__name__": "grader"}
    exec(compile(request["source"], "<grader>", "exec"), namespace)
    score = namespace["grade"](request["sample"], request["item"])
    result = {"score": float(score)}
except BaseException as exc:
    lines = traceback.format_exception_only(type(exc), exc)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<grader>"]
    where = f" (grader line {frames[-1].lineno})" if frames else ""
    result = {"error": "".join(lines).strip() + where}
real_stdout.write("\n" + json.dumps(result) + "\n")
real_stdout.flush()
"""


class RunError(Exception):
    """A fault while grading one sample: ``flag`` is OpenAI's name for it (``invalid_variable_error``…), and
    ``detail_key`` the field of OpenAI's result that carries the message, if it has one."""

    def __init__(self, flag: str, message: str, detail_key: str | None = None) -> None:
        super().__init__(message)
        self.flag, self.message, self.detail_key = flag, message, detail_key


def check_source(source: str) -> str | None:
    """What keeps ``source`` from being a grader (it does not compile; it defines no ``grade``), or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"the source does not compile: line {exc.lineno}: {exc.msg}"
    if not any(isinstance(node, ast.FunctionDef) and node.name == "grade" for node in tree.body):
        return "the source defines no grade(sample, item) function"
    return None


def run_python_grader(source: str, sample: dict[str, Any], item: Any, timeout_s: float = TIMEOUT_S) -> float:
    """``grade(sample, item)`` of ``source`` in the sandbox; raises :class:`RunError` for a fault."""
    limits = {"memory": MEMORY_BYTES, "cpu": max(1, int(timeout_s) + 1), "file": OUTPUT_BYTES}
    payload = json.dumps({"source": source, "sample": sample, "item": item}).encode()
    with tempfile.TemporaryDirectory(prefix="tt-grader-") as work:
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(limits)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=work, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = proc.communicate(payload, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise RunError(
                "unresponsive_reward_error", f"the python grader ran past its {timeout_s:g} s limit and was stopped"
            ) from None
        finally:
            _kill(proc)
    lines = out[-OUTPUT_BYTES:].decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if "score" in result:
        return float(result["score"])
    detail = result.get("error") or f"the python grader's process ended with status {proc.returncode}"
    raise RunError("python_grader_runtime_error", detail, detail_key="python_grader_runtime_error_details")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
