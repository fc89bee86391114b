"""Run a command as a user does, ``python -m <module> <args>``, in a process of its own, quickly.

Every command imports torch, and most Lightning and Hydra, which takes seconds, and the suite runs
more than a hundred commands. So each command is forked from multiprocessing's fork server, which has
imported them once per test process; from the fork on it is a process of its own, set up as a new
interpreter would be: its arguments, environment, working dir, ``sys.path`` (``PYTHONPATH`` included),
stdin from /dev/null, its own stdout and stderr, exit status (negative for a signal), atexit handlers.
What a fork cannot redo (the interpreter's start-up variables, CUDA once initialised) gets a fresh
interpreter instead, as does ``fresh=True`` (a test of what a command imports).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Imported once, by the fork server: what the commands import (the training app pulls in torch,
# torchmetrics, Lightning and Hydra). Only modules that hold nothing of a process's own at import: not
# W&B, whose import makes a temp dir that each process deletes at exit.
PRELOAD = ["src.training.train", "src.training.fit", "src.inference.upscale", "src.inference.evaluate"]
# Read when an interpreter or a preloaded library starts, so a fork cannot take a new value of them.
READ_AT_START = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "LD_", "MALLOC_", "TORCH", "PYTORCH")

_server_env: dict[str, str] | None = None
_default_path: dict[str, list[str]] = {}


def run_module(module: str, *args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT,
               timeout: float = 300, fresh: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m module *args`` with ``env`` (default: this process's) in ``cwd``; output captured as text."""
    env = dict(os.environ if env is None else env)
    cmd = [sys.executable, "-m", module, *args]
    if fresh or not _can_fork(env):
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    # As an interpreter starts: the script dir (for -m, the working dir), PYTHONPATH made absolute, the rest.
    extra = env.get("PYTHONPATH", "")
    path = [str(cwd), *[os.path.abspath(os.path.join(cwd, p)) for p in extra.split(os.pathsep) if extra], *_start_path(cwd)]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        out.touch()
        err.touch()
        proc = multiprocessing.get_context("forkserver").Process(
            target=_command, args=(module, list(args), env, str(cwd), path, str(out), str(err)), name=module
        )
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(cmd, timeout, out.read_bytes(), err.read_bytes())
        text = {f: f.read_text(errors="replace") for f in (out, err)}
    return subprocess.CompletedProcess(cmd, proc.exitcode, text[out], text[err])


def _can_fork(env: dict[str, str]) -> bool:
    global _server_env
    if _server_env is None:
        import torch

        # A fork server may initialise CUDA, which its forks could not use; off Linux, forking a process
        # that has imported these libraries is not safe (macOS) or not possible (Windows).
        if torch.cuda.is_available() or not sys.platform.startswith("linux"):
            _server_env = {}
            return False
        multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
        _server_env = dict(os.environ)  # the server starts with the first command, in this environment
    if not _server_env:
        return False
    keys = {k for k in (*env, *_server_env) if k.startswith(READ_AT_START) and k != "PYTHONPATH"}
    return all(env.get(k) == _server_env.get(k) for k in keys)


def _start_path(cwd: Path) -> list[str]:
    """``sys.path`` past the script dir of a new interpreter without ``PYTHONPATH``: stdlib, site-packages, .pth."""
    if str(cwd) not in _default_path:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        probe = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"]
        _default_path[str(cwd)] = json.loads(subprocess.run(probe, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout)  # noqa: E501
    return _default_path[str(cwd)]


def _command(module: str, args: list[str], env: dict[str, str], cwd: str, path: list[str], out: str, err: str) -> None:
    """The forked process: becomes ``python -m module args`` and exits as that interpreter would."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        opened = os.open(name, flags)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = path
    sys.argv = [module, *args]  # runpy sets argv[0] to the module's file, as -m does
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # An interpreter's exit: wait for non-daemon threads, run atexit handlers, flush.
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
