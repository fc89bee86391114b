"""The test harness's commands (tests/commands.py): a fork of the fork server runs a command as a new
interpreter does, so the tests that use it test what a user's command does."""

import os

import pytest

from tests.commands import ROOT, run_module


@pytest.mark.parametrize("exit_as", ["0", "3", "kill"])
def test_a_forked_command_sees_and_does_what_a_new_interpreter_does(tmp_path, exit_as):
    env = {**os.environ, "PROBE": "value", "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    forked = run_module("tests.command_probe", exit_as, "x y", env=env, cwd=ROOT)
    new = run_module("tests.command_probe", exit_as, "x y", env=env, cwd=ROOT, fresh=True)
    assert forked.stderr.splitlines()[-1] == "forked" and new.stderr.splitlines()[-1] == "new interpreter"
    assert forked.returncode == new.returncode == (-9 if exit_as == "kill" else int(exit_as))
    assert forked.stdout == new.stdout  # argv, sys.path (PYTHONPATH first), cwd, environment, stdin, atexit
    assert str(tmp_path) in forked.stdout and ("atexit handler ran" in forked.stdout) == (exit_as != "kill")
    assert forked.stderr.splitlines()[:-1] == new.stderr.splitlines()[:-1] == ["to stderr"]


def test_a_variable_read_at_start_gets_a_new_interpreter():
    env = {**os.environ, "OMP_NUM_THREADS": "7" if os.environ.get("OMP_NUM_THREADS") != "7" else "5"}
    assert run_module("tests.command_probe", "0", env=env).stderr.splitlines()[-1] == "new interpreter"


@pytest.mark.parametrize("module", ["src.train", "src.evaluate", "src.upscale", "src.export", "src.model_file", "src.report",
                                    "src.data.prepare"])  # fmt: skip
def test_each_command_starts_in_a_new_interpreter(module):
    # The other tests run commands forked after the server's imports, which could hide an import that
    # works only in that order: here each command imports its own way.
    res = run_module(module, "--help", fresh=True, timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "usage:" in res.stdout or "powered by Hydra" in res.stdout
