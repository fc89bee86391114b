"""Upscaling speed per net, precision and layout; Set5 PSNR-Y per precision; the resize kernels before/after.

    .venv/bin/python scripts/bench_infer.py                        # 4 nets, x2, 384x384 LR -> 768x768, fp32, CPU
    .venv/bin/python scripts/bench_infer.py --lr-size 512 --tile 128 --repeats 5
    .venv/bin/python scripts/bench_infer.py --device cuda --precision bf16
    .venv/bin/python scripts/bench_infer.py --quick                # seconds: checks that it runs
    .venv/bin/python scripts/bench_infer.py --ckpt CKPT            # fp32 vs bf16 (vs fp16 on a GPU): s/image + Set5 PSNR-Y
    .venv/bin/python scripts/bench_infer.py --resize               # downscale+upsample, dense-only (before) vs now

Default mode: three ways to make the same SR image from one LR batch, timed interleaved, medians over ``--repeats``:
  raw      the net alone on the pre-upsampled, padded input (upsampling done once, outside the clock)
  untiled  ``upscale_tensor(net, lr, scale, tile=0)``: upsampling + net, whole image in one pass
  tiled    ``upscale_tensor(net, lr, scale, tile=--tile)``: the same, in tiles with context margins
MP/s counts output (HR) pixels. Peak memory is measured in a separate untimed run of each (CUDA
allocator peak on GPU; resident memory sampled every ms on CPU) above what was allocated before it.
Weights are random: speed and memory do not depend on them.

``--ckpt``: the acceptance A/B of ``src.devices``' default precision. For each variant (fp32 in the NCHW
layout the nets ran in before channels_last, then each precision in channels_last, what ``src.inference.tiling``
runs now) it times ``src.inference.evaluate.super_resolve`` on the Set5 LR images (x the checkpoint's scale,
tile ``auto``), interleaved over ``--repeats``, and scores them with ``src.inference.evaluate.score_image``:
seconds per image, speed-up over the first variant, PSNR-Y and its difference from fp32.

``--resize``: ``downscale`` + ``upsample`` (x2, bicubic) of a training batch (16x3x48x48) and of a photo
(1x3x480x640): the code before banded weights (dense float64 matrices converted per call; copied below)
against ``src.degrade`` now, interleaved, medians; and the largest difference between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from bench_common import MODELS, ROOT, compose_train, median, peak_memory, sync, table

from src import tiling
from src.degrade import downscale, resize_matrix, upsample
from src.devices import PRECISIONS, describe, precision_context, resolve_precision, select_device
from src.inference.tiling import DEFAULT_TILE, prepare_net, tile_margin, upscale_tensor
from src.metrics import to_y

# Lightning's names, as scripts/bench_gpu.sh passes them, for src.devices' names.
ALIASES = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}


@contextlib.contextmanager
def nchw_tiling() -> Iterator[None]:
    """src.inference.tiling with the nets kept in NCHW, the layout inference ran in before channels_last."""
    keep = tiling.prepare_net
    tiling.prepare_net = lambda net, device=None: net.to(device, memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        tiling.prepare_net = keep


def build_net(model: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    cfg = compose_train([f"model={model}"])
    net = hydra.utils.instantiate(cfg.model.net).eval()
    return prepare_net(net, device) if channels_last else net.to(device)


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

    layout = contextlib.nullcontext if args.channels_last else nchw_tiling

    def raw() -> torch.Tensor:
        with torch.inference_mode(), precision_context(device, args.precision):
            return net(x)

    def untiled() -> torch.Tensor:
        with layout():
            return upscale_tensor(net, lr, s, tile=0, precision=args.precision)

    def tiled() -> torch.Tensor:
        with layout():
            return upscale_tensor(net, lr, s, tile=args.tile, precision=args.precision)

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


# --- --ckpt: precision A/B on Set5 -------------------------------------------------------------------------
def precision_ab(args: argparse.Namespace, device: torch.device) -> list[dict[str, object]]:
    from src.data.images import list_images
    from src.inference.checkpoint import load_checkpoint
    from src.inference.evaluate import modcrop, read_hr, score_image, super_resolve

    model = load_checkpoint(args.ckpt)
    s = model.scale
    paths = list_images(args.set5)
    hrs = [modcrop(torch.from_numpy(read_hr(p)).permute(2, 0, 1)[None].double() / 255, s) for p in paths]
    lrs = [downscale(hr, s).float() for hr in hrs]
    out_mp = sum(hr.shape[-2] * hr.shape[-1] for hr in hrs) / 1e6
    variants = [("fp32", "nchw")] + [(p, "channels_last") for p in args.precisions]

    def run(precision: str, layout: str) -> None:
        with nchw_tiling() if layout == "nchw" else contextlib.nullcontext():
            for lr in lrs:
                super_resolve(model, lr, "auto", device=device, precision=precision)
        sync(device)

    secs: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants if r % 2 == 0 else variants[::-1]:  # alternate order against drift on a shared machine
            t0 = time.perf_counter()
            run(*v)
            secs[v].append(time.perf_counter() - t0)
        print(
            f"  repeat {r + 1}/{args.repeats}: " + ", ".join(f"{p}/{lay} {secs[(p, lay)][-1]:.2f} s" for p, lay in variants),
            flush=True,
        )
    psnr: dict[tuple[str, str], float] = {}
    for v in variants:
        with nchw_tiling() if v[1] == "nchw" else contextlib.nullcontext():
            psnr[v] = float(np.mean([score_image(read_hr(p), s, model, "auto", device, v[0])["psnr_y"] for p in paths]))
    base = variants[0]
    fp32 = psnr[("fp32", "channels_last")] if ("fp32", "channels_last") in psnr else psnr[base]
    rows = []
    for v in variants:
        per_image = median(secs[v]) / len(lrs)
        speedup = median([b / t for b, t in zip(secs[base], secs[v], strict=True)])
        rows.append(
            {
                "precision": v[0],
                "layout": v[1],
                "s/image": f"{per_image:.3f}",
                "MP/s": f"{out_mp / median(secs[v]):.3f}",
                f"x vs {base[0]}/{base[1]}": f"{speedup:.2f}",
                f"Set5 x{s} PSNR-Y": f"{psnr[v]:.4f}",
                "dB vs fp32": f"{psnr[v] - fp32:+.4f}",
                "2x and 0.02 dB": "yes" if speedup >= 2 and abs(psnr[v] - fp32) <= 0.02 else "no",
            }
        )
    return rows


# --- --resize: the resize kernels, dense-only (before) vs now ------------------------------------------------
@functools.lru_cache(maxsize=64)
def _old_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    return resize_matrix(in_len, out_len, scale)


def _old_imresize(x: torch.Tensor, scale: float, round_uint8: bool = False) -> torch.Tensor:
    # src.degrade.imresize before banded weights: dense float64 matrices (LRU of 64), converted every call.
    h, w = x.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    x = torch.from_numpy(_old_matrix(h, oh, scale)).to(x.device, x.dtype) @ x
    if round_uint8:
        x = x.mul(255).round_().clamp_(0, 255).div_(255)
    x = x @ torch.from_numpy(_old_matrix(w, ow, scale)).to(x.device, x.dtype).T
    if round_uint8:
        x = x.mul(255).round_().clamp_(0, 255).div_(255)
    return x


def resize_ab(args: argparse.Namespace, device: torch.device) -> list[dict[str, object]]:
    rows = []
    for shape, calls in (((16, 3, 48, 48), 200), ((1, 3, 480, 640), 10)):
        hr = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(device)

        def before(hr=hr) -> torch.Tensor:
            return _old_imresize(_old_imresize(hr, 0.5, True), 2.0).clamp_(0, 1)

        def now(hr=hr) -> torch.Tensor:
            return upsample(downscale(hr, 2), 2, "bicubic")

        ways = {"before": before, "now": now}
        secs: dict[str, list[float]] = {k: [] for k in ways}
        for r in range(args.repeats):
            for k in ways if r % 2 == 0 else reversed(ways):
                secs[k].append(timed(ways[k], device, calls))
        diff = (before() - now()).abs().max().item()
        rows.append(
            {
                "batch": "x".join(map(str, shape)),
                "before us": f"{median(secs['before']) * 1e6:.0f}",
                "now us": f"{median(secs['now']) * 1e6:.0f}",
                "now/before": f"{median([n / b for n, b in zip(secs['now'], secs['before'], strict=True)]):.3f}",
                "max |diff|": f"{diff:.1e}",
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--lr-size", type=int, default=384, help="LR image side; output is scale x this")
    ap.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help=f"LR tile side (default src.inference.tiling.DEFAULT_TILE={DEFAULT_TILE})"
    )
    ap.add_argument(
        "--precision", default="fp32", choices=[*PRECISIONS, *ALIASES], help="the net's precision (src.devices); default fp32"
    )
    ap.add_argument(
        "--nchw", dest="channels_last", action="store_false", help="keep the nets in NCHW (the layout before channels_last)"
    )
    ap.add_argument(
        "--channels-last", action="store_true", default=True, help="channels_last nets (the default, as tiling runs them)"
    )
    ap.add_argument("--ckpt", type=Path, help="precision A/B: s/image and Set5 PSNR-Y of this checkpoint per precision")
    ap.add_argument("--set5", type=Path, default=ROOT.parent / "shared" / "sr_benchmarks" / "Set5", help="HR folder for --ckpt")
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, help="for --ckpt (default: fp32 bf16, plus fp16 on a GPU)")
    ap.add_argument("--resize", action="store_true", help="downscale+upsample: dense-only (before) vs src.degrade now")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2, help="calls per timed span")
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] | mps (default cpu)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", help="also write the table rows to this JSON file (scripts/bench_gpu.sh merges them)")
    ap.add_argument("--quick", action="store_true", help="tiny run (LR 64, tile 32, 1 repeat): checks it works")
    args = ap.parse_args()
    if args.quick:
        args.lr_size, args.tile, args.repeats, args.calls = 64, 32, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    device = select_device(args.device)
    args.precision = ALIASES.get(args.precision, args.precision)
    resolve_precision(args.precision, device)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    if args.resize:
        print(
            f"device {describe(device, 'fp32')}, torch {torch.__version__}{load}; medians of {args.repeats} repeats", flush=True
        )
        print(table(rows := resize_ab(args, device), list(rows[0])))
        return
    if args.ckpt:
        args.precisions = args.precisions or (["fp32", "bf16"] + (["fp16"] if device.type != "cpu" else []))
        print(f"device {describe(device, 'fp32')}, torch {torch.__version__}{load}; {args.ckpt}; Set5 {args.set5}", flush=True)
        rows = precision_ab(args, device)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        print("\n" + table(rows, list(rows[0])))
        print("s/image: median over repeats of the Set5 pass / 5; speed-up: median of per-repeat ratios; tile auto")
        return
    dev_name = describe(device, args.precision)
    print(
        f"device {dev_name}, torch {torch.__version__}, threads {torch.get_num_threads()}, x{args.scale}, "
        f"LR {args.lr_size}^2 -> HR {args.lr_size * args.scale}^2, tile {args.tile}, "
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
