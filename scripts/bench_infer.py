"""Upscaling megapixels/s per net: tiled and untiled (src/tiling.py) against the same net's raw forward, and peak memory.

    .venv/bin/python scripts/bench_infer.py                        # 4 nets, x2, 384x384 LR -> 768x768, fp32, CPU
    .venv/bin/python scripts/bench_infer.py --lr-size 512 --tile 128 --repeats 5
    .venv/bin/python scripts/bench_infer.py --device cuda --precision bf16-mixed --channels-last
    .venv/bin/python scripts/bench_infer.py --quick                # seconds: checks that it runs

Three ways to make the same SR image from one LR batch, timed interleaved, medians over ``--repeats``:
  raw      the net alone on the pre-upsampled, padded input (upsampling done once, outside the clock)
  untiled  ``upscale_tensor(net, lr, scale, tile=0)``: upsampling + net, whole image in one pass
  tiled    ``upscale_tensor(net, lr, scale, tile=--tile)``: the same, in tiles with context margins
MP/s counts output (HR) pixels. Peak memory is measured in a separate untimed run of each (CUDA
allocator peak on GPU; resident memory sampled every ms on CPU) above what was allocated before it.
Weights are random: speed and memory do not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from bench_common import MODELS, ROOT, autocast, compose_train, median, peak_memory, sync, table

from src.degrade import upsample
from src.metrics import to_y
from src.tiling import DEFAULT_TILE, tile_margin, upscale_tensor


def build_net(model: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    cfg = compose_train([f"model={model}"])
    net = hydra.utils.instantiate(cfg.model.net).to(device).eval()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net


def timed(fn, device: torch.device, reps: int) -> float:
    """Seconds per call of ``fn`` (one warm-up call first: kernel selection, allocator growth)."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


def bench(args: argparse.Namespace, model: str, device: torch.device) -> dict[str, object]:
    net = build_net(model, device, args.channels_last)
    s, n = args.scale, args.lr_size
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, n, n, generator=gen).to(device)
    out_mp = (n * s) ** 2 / 1e6

    # The raw forward's input: exactly what sr_whole feeds the net, prepared once outside the clock.
    with torch.inference_mode():
        x = upsample(lr, s, net.upsample)
        if net.in_channels == 1:
            x = to_y(x) / 255
        o = net.offset
        x = F.pad(x, (o, o, o, o), mode="replicate") if o else x
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

    def raw() -> torch.Tensor:
        with torch.inference_mode(), autocast(device, args.precision):
            return net(x)

    def untiled() -> torch.Tensor:
        with autocast(device, args.precision):
            return upscale_tensor(net, lr, s, tile=0)

    def tiled() -> torch.Tensor:
        with autocast(device, args.precision):
            return upscale_tensor(net, lr, s, tile=args.tile)

    ways = {"raw": raw, "untiled": untiled, "tiled": tiled}
    secs: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(args.repeats):
        names = list(ways) if r % 2 == 0 else list(reversed(ways))  # alternate order against drift on a shared CPU
        for k in names:
            secs[k].append(timed(ways[k], device, args.calls))
    mem: dict[str, float] = {}
    for k, fn in ways.items():
        with peak_memory(device) as m:
            fn()
        mem[k] = m["peak_mb"]
    mps = {k: out_mp / median(v) for k, v in secs.items()}
    # Per-repeat ratios (same round, same neighbours) are steadier than a ratio of medians.
    tiled_ratio = median([u / t for u, t in zip(secs["untiled"], secs["tiled"], strict=True)])
    untiled_raw = median([r_ / u for r_, u in zip(secs["raw"], secs["untiled"], strict=True)])
    h, w = n, n
    tiles = -(-h // args.tile) * -(-w // args.tile)
    return {
        "model": model,
        "raw MP/s": f"{mps['raw']:.3f}",
        "untiled MP/s": f"{mps['untiled']:.3f}",
        "tiled MP/s": f"{mps['tiled']:.3f}",
        "tiled/untiled": f"{tiled_ratio:.3f}",
        "untiled/raw": f"{untiled_raw:.3f}",
        "tiles": tiles,
        "margin": tile_margin(net, s),
        "raw MB": f"{mem['raw']:.0f}",
        "untiled MB": f"{mem['untiled']:.0f}",
        "tiled MB": f"{mem['tiled']:.0f}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--lr-size", type=int, default=384, help="LR image side; output is scale x this")
    ap.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help=f"LR tile side (default src.tiling.DEFAULT_TILE={DEFAULT_TILE})"
    )
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"], help="32-true: what src.upscale runs")
    ap.add_argument("--channels-last", action="store_true", help="net weights and raw input in channels_last")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2, help="calls per timed span")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", help="also write the table rows to this JSON file (scripts/bench_gpu.sh merges them)")
    ap.add_argument("--quick", action="store_true", help="tiny run (LR 64, tile 32, 1 repeat): checks it works")
    args = ap.parse_args()
    if args.quick:
        args.lr_size, args.tile, args.repeats, args.calls = 64, 32, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    device = torch.device(args.device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(
        f"device {dev_name}, torch {torch.__version__}, threads {torch.get_num_threads()}, x{args.scale}, "
        f"LR {args.lr_size}^2 -> HR {args.lr_size * args.scale}^2, tile {args.tile}, {args.precision}, "
        f"{'channels_last' if args.channels_last else 'NCHW'}",
        flush=True,
    )
    rows = []
    for model in args.models:
        rows.append(bench(args, model, device))
        print(f"  {model}: done", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows, list(rows[0])))
    print("MP/s of output pixels, medians; ratios: median of per-repeat ratios; MB: peak above the start of each call")


if __name__ == "__main__":
    main()
