"""Kernel time and page faults of a training step under glibc's default heap vs HeapByPhase's settings.

    .venv/bin/python scripts/bench_heap.py                        # cnn_small and cnn_deep, bf16-mixed, CPU
    .venv/bin/python scripts/bench_heap.py --models cnn_deep --steps 10

One process per net (glibc's defaults cannot be restored once changed), the bare training step of
scripts/bench_train.py (batch 16 x 48 px, 1 thread), run under each setting in turn: the defaults, then
HeapByPhase's evaluation setting (what src/training/train.py used for the whole run before) and its training
setting, twice each in alternation. user/sys: process CPU time per step (getrusage).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

import hydra
import torch
from bench_common import MODELS, compose_train, table
from bench_train import BareLoop, overrides_for

from src.training.callbacks.heap import glibc


def measure(bare: BareLoop, steps: int, batch: int) -> tuple[float, float, float]:
    bare.run(3, 3, batch)  # settle the heap under the new setting
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    bare.run(0, steps, batch)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (
        (r1.ru_utime - r0.ru_utime) / steps * 1e3,
        (r1.ru_stime - r0.ru_stime) / steps * 1e3,
        (r1.ru_minflt - r0.ru_minflt) / steps,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["cnn_small", "cnn_deep"], choices=MODELS)
    ap.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    ap.add_argument("--steps", type=int, default=0, help="timed steps per setting (0: 300 for cnn_small, 15 otherwise)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one net, rows as JSON
    args = ap.parse_args()
    if glibc() is None:
        ap.error("needs glibc (mallopt)")
    if not args.one:
        rows = []
        for model in args.models:
            cmd = [sys.executable, __file__, "--one", "--models", model, "--precision", args.precision]
            cmd += ["--steps", str(args.steps)]
            rows += json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(table(rows, list(rows[0])))
        return
    torch.set_num_threads(1)
    model = args.models[0]
    ns = argparse.Namespace(patch=48, batch=16, device="cpu", store=None, on_device=False, compile=False, override=[])
    cfg = compose_train(overrides_for(ns, model, args.precision, 1, tempfile.mkdtemp(prefix="bench_heap_")))
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    bare = BareLoop(cfg, datamodule, torch.device("cpu"), args.precision, n_batches=8, compile_net=False)
    steps = args.steps or (300 if model == "cnn_small" else 15)
    heap = hydra.utils.instantiate(cfg.callbacks.heap)
    rows = []
    for name, settings in [("glibc default", None)] + [("evaluation (1 MiB)", heap.eval), ("training", heap.train)] * 2:
        if settings is not None:
            heap.apply(settings, trim=settings is heap.eval)
        user, sys_ms, faults = measure(bare, steps, ns.batch)
        row = {"model": model, "heap setting": name, "user ms/step": f"{user:.2f}", "sys ms/step": f"{sys_ms:.2f}"}
        rows.append(row | {"faults/step": f"{faults:.0f}"})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
