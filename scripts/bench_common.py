"""The harness shared by the bench scripts (train, infer, heap; not a script itself).

Timing rules used throughout: wall-clock with ``time.perf_counter``, a device sync only at the two
ends of a timed span (never per step, which would itself cost what we want to measure), medians
over repeats, and A/B pairs interleaved so a noisy neighbour on a shared machine hits both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Every net with a config in conf/model (model=custom aside); the benches default to the paper's four
# and the reference nets of the zoo sweep (conf/experiment/compare_zoo.yaml).
MODELS = tuple(sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml") if p.stem[0] != "_" and p.stem != "custom"))
ZOO = ("cnn_small", "cnn_medium", "cnn_deep", "waifu2x", "espcn", "fsrcnn", "edsr_baseline")

K = TypeVar("K")


def add_harness_args(ap: argparse.ArgumentParser) -> None:
    """The flags every bench takes the same way: which nets, how many repeats, threads, JSON rows."""
    ap.add_argument("--models", nargs="+", default=list(ZOO), choices=MODELS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", help="also write the table rows to this JSON file (scripts/bench_gpu.sh merges them)")


def set_threads(n: int) -> None:
    """torch's intra-op threads; 0 keeps torch's default."""
    if n:
        torch.set_num_threads(n)


def head(device_name: str, *settings: str) -> str:
    """The line a table is read against: the device, torch's version, then the run's own settings."""
    return ", ".join([f"device {device_name}", f"torch {torch.__version__}", *settings])


def sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: the clock must wait for them, but only at a span's ends.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """What Lightning's ``precision`` does around the training step's forward: bf16 autocast or nothing."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision in ("32-true", "32"):
        return contextlib.nullcontext()
    raise ValueError(f"precision {precision!r}: use 32-true or bf16-mixed")


def seconds(
    fn: Callable[[], object], device: torch.device, calls: int, warmup: int = 1, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds of ``calls`` calls of ``fn``, after ``warmup`` untimed ones (kernel selection, allocator growth)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = clock()
    for _ in range(calls):
        fn()
    sync(device)
    return clock() - start


def seconds_per_call(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls, after one warm-up call."""
    return seconds(fn, device, calls) / calls


def in_turn(names: Sequence[K], r: int) -> list[K]:
    """Repeat ``r``'s order: as given on even repeats, reversed on odd ones, so a slow spell does not keep hitting one side."""
    return list(names) if r % 2 == 0 else list(names)[::-1]


def interleave(
    ways: Mapping[K, Callable[[], float]], repeats: int, after: Callable[[int, dict[K, list[float]]], None] | None = None
) -> dict[K, list[float]]:
    """Each way's measurement per repeat, the ways run in turn within a repeat; ``after(r, results)`` ends repeat ``r``."""
    results: dict[K, list[float]] = {k: [] for k in ways}
    for r in range(repeats):
        for k in in_turn(list(ways), r):
            results[k].append(ways[k]())
        if after is not None:
            after(r, results)
    return results


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    # Per repeat: both sides of a ratio ran in the same round, next to the same neighbours, so the
    # ratios are steadier than a ratio of medians.
    return [a / b for a, b in zip(num, den, strict=True)]


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 3, clock=time.perf_counter) -> float:
    """GFLOP/s of one large ``torch.matmul`` (n x n x n): the dense-compute ceiling of this device and dtype."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    # The warm-up call picks/JITs the kernel.
    return 2 * n**3 * reps / seconds(lambda: torch.matmul(a, b), device, reps, clock=clock) / 1e9


def forward_macs(net: nn.Module, in_channels: int, h: int, w: int) -> int:
    """Exact multiply-accumulates of one forward on an ``h x w`` input (``torch.utils.flop_counter``: convs,
    transposed convs, matmuls); an unpadded net's shrinking layers are counted at their true size."""
    from torch.utils.flop_counter import FlopCounterMode

    p = next(net.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, in_channels, h, w, device=p.device, dtype=p.dtype))
    return counter.get_total_flops() // 2


def compose_train(overrides: list[str]):
    """conf/train.yaml composed with ``overrides``, exactly as ``python -m src.train ...`` would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.training.run_context import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _rss_bytes() -> int:
    # Resident set size from /proc (Linux): current, not the high-water mark, so a block's own peak shows.
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak memory (MB) the block adds: CUDA's allocator peak on GPU; on CPU, resident memory sampled every ms.

    Sampling costs a little CPU: measure memory in its own, untimed run.
    """
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    import threading

    base = _rss_bytes()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, _rss_bytes())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        done.set()
        t.join()
        peak = max(peak, _rss_bytes())
        out["peak_mb"] = (peak - base) / 2**20


def table(rows: list[dict[str, object]], cols: list[str]) -> str:
    """A plain fixed-width table (numbers already formatted as strings by the caller)."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    line = "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join([line, "-" * len(line), *body])


def print_rows(rows: list[dict[str, object]], json_path: str | None, note: str) -> None:
    """The result table after a blank line, then what its columns mean; also as JSON rows when asked."""
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows, list(rows[0])))
    print(note)
