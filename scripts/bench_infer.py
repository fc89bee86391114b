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
runs now) it times ``src.inference.scoring.super_resolve`` on the Set5 LR images (x the checkpoint's scale,
tile ``auto``), interleaved over ``--repeats``, and scores them with ``src.inference.scoring.score_image``:
seconds per image, speed-up over the first variant, PSNR-Y and its difference from fp32.

``--resize``: ``downscale`` + ``upsample`` (x2, bicubic) of a training batch (16x3x48x48) and of a photo
(1x3x480x640): the code before banded weights (dense float64 matrices converted per call; copied below)
against ``src.degrade`` now, interleaved, medians; and the largest difference between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from bench_common import (
    ROOT,
    add_harness_args,
    compose_train,
    head,
    interleave,
    median,
    peak_memory,
    print_rows,
    ratios,
    seconds,
    seconds_per_call,
    set_threads,
    table,
)
from omegaconf import OmegaConf

from src.arch import contract
from src.arch.pipeline import SRPipeline
from src.degrade import downscale, resize_matrix, upsample
from src.devices import PRECISIONS, describe, precision_context, resolve_precision, select_device
from src.inference import tiling
from src.inference.tiling import DEFAULT_TILE, prepare_net, tile_margin, upscale_tensor

if TYPE_CHECKING:
    from src.inference.checkpoint import LoadedModel

# Lightning's names, as scripts/bench_gpu.sh passes them, for src.devices' names.
ALIASES = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}
SPEED_NOTE = "MP/s of output pixels, medians; ratios: median of per-repeat ratios; MB: peak above the start of each call"
CKPT_NOTE = "s/image: median over repeats of the Set5 pass / 5; speed-up: median of per-repeat ratios; tile auto"


@contextlib.contextmanager
def nchw_tiling() -> Iterator[None]:
    """src.inference.tiling with the nets kept in NCHW, the layout inference ran in before channels_last."""
    keep = tiling.prepare_net
    tiling.prepare_net = lambda net, device=None: net.to(device, memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        tiling.prepare_net = keep


def layout_context(channels_last: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if channels_last else nchw_tiling()


def load_note() -> str:
    return f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""


# --- default: raw / untiled / tiled upscaling speed and peak memory per net -----------------------------------
def build_net(model: str, scale: int, device: torch.device, channels_last: bool) -> torch.nn.Module:
    cfg = compose_train([f"model={model}"])
    net = contract.build_net(OmegaConf.to_container(cfg.model.net, resolve=True), scale).eval()
    return prepare_net(net, device) if channels_last else net.to(device)


def raw_input(net: torch.nn.Module, lr: torch.Tensor, scale: int, channels_last: bool) -> torch.Tensor:
    """Exactly what sr_whole feeds the net, prepared once outside the clock."""
    pipeline = SRPipeline(net, scale)
    with torch.inference_mode():
        x = pipeline.pad(pipeline.net_input(pipeline.upsample(lr)))
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def upscale_ways(
    args: argparse.Namespace, net: torch.nn.Module, lr: torch.Tensor, device: torch.device
) -> dict[str, Callable[[], torch.Tensor]]:
    """Three ways to the same SR image: the net alone on a ready input, upscale_tensor whole, upscale_tensor tiled."""
    x = raw_input(net, lr, args.scale, args.channels_last)

    def raw() -> torch.Tensor:
        with torch.inference_mode(), precision_context(device, args.precision):
            return net(x)  # the net alone: the size check is part of what "untiled" costs

    def upscale(tile: int) -> torch.Tensor:
        with layout_context(args.channels_last):
            return upscale_tensor(net, lr, args.scale, tile=tile, precision=args.precision)

    return {"raw": raw, "untiled": functools.partial(upscale, 0), "tiled": functools.partial(upscale, args.tile)}


def peak_mbs(ways: dict[str, Callable[[], torch.Tensor]], device: torch.device) -> dict[str, float]:
    """Peak MB of one call of each way, in its own untimed run (sampling memory costs CPU time)."""
    mem: dict[str, float] = {}
    for k, fn in ways.items():
        with peak_memory(device) as m:
            fn()
        mem[k] = m["peak_mb"]
    return mem


def bench(args: argparse.Namespace, model: str, device: torch.device) -> dict[str, object]:
    """One net's row: MP/s of each way (medians of interleaved repeats), their ratios, tiles, margin, peak MB."""
    net = build_net(model, args.scale, device, args.channels_last)
    n = args.lr_size
    lr = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(0)).to(device)
    ways = upscale_ways(args, net, lr, device)
    secs = interleave({k: functools.partial(seconds_per_call, fn, device, args.calls) for k, fn in ways.items()}, args.repeats)
    mem = peak_mbs(ways, device)
    out_mp = (n * args.scale) ** 2 / 1e6  # MP/s counts output pixels
    mps = {k: out_mp / median(v) for k, v in secs.items()}
    return {
        "model": model,
        "raw MP/s": f"{mps['raw']:.3f}",
        "untiled MP/s": f"{mps['untiled']:.3f}",
        "tiled MP/s": f"{mps['tiled']:.3f}",
        "tiled/untiled": f"{median(ratios(secs['untiled'], secs['tiled'])):.3f}",
        "untiled/raw": f"{median(ratios(secs['raw'], secs['untiled'])):.3f}",
        "tiles": -(-n // args.tile) * -(-n // args.tile),
        "margin": tile_margin(net, args.scale),
        "raw MB": f"{mem['raw']:.0f}",
        "untiled MB": f"{mem['untiled']:.0f}",
        "tiled MB": f"{mem['tiled']:.0f}",
    }


def run_speed(args: argparse.Namespace, device: torch.device) -> None:
    layout = "channels_last" if args.channels_last else "NCHW"
    size = f"LR {args.lr_size}^2 -> HR {args.lr_size * args.scale}^2"
    settings = f"threads {torch.get_num_threads()}", f"x{args.scale}", size, f"tile {args.tile}", layout
    print(head(describe(device, args.precision), *settings), flush=True)
    rows = []
    for model in args.models:
        rows.append(bench(args, model, device))
        print(f"  {model}: done", flush=True)
    print_rows(rows, args.json, SPEED_NOTE)


# --- --ckpt: precision A/B on Set5 -------------------------------------------------------------------------
Variant = tuple[str, str]  # (precision, layout)


def load_set5(folder: Path, scale: int) -> tuple[list[Path], list[torch.Tensor], float]:
    """The Set5 HR paths, their LR images (mod-cropped, downscaled) and the output megapixels of one pass."""
    from src.data.images import list_images
    from src.inference.scoring import modcrop, read_hr

    paths = list_images(folder)
    hrs = [modcrop(torch.from_numpy(read_hr(p)).permute(2, 0, 1)[None].double() / 255, scale) for p in paths]
    return paths, [downscale(hr, scale).float() for hr in hrs], sum(hr.shape[-2] * hr.shape[-1] for hr in hrs) / 1e6


def set5_pass(model: LoadedModel, lrs: list[torch.Tensor], device: torch.device, variant: Variant) -> None:
    from src.inference.scoring import super_resolve

    precision, layout = variant
    with layout_context(layout != "nchw"):
        for lr in lrs:
            super_resolve(model, lr, "auto", device=device, precision=precision)


def set5_psnr(model: LoadedModel, paths: list[Path], device: torch.device, variant: Variant) -> float:
    from src.inference.scoring import read_hr, score_image

    precision, layout = variant
    with layout_context(layout != "nchw"):
        return float(np.mean([score_image(read_hr(p), model.scale, model, "auto", device, precision)["psnr_y"] for p in paths]))


def time_variants(
    args: argparse.Namespace, model: LoadedModel, lrs: list[torch.Tensor], device: torch.device, variants: list[Variant]
) -> dict[Variant, list[float]]:
    """Seconds of one Set5 pass per variant and repeat, interleaved, each repeat printed as it ends."""

    def one_pass(v: Variant) -> float:
        return seconds(functools.partial(set5_pass, model, lrs, device, v), device, calls=1, warmup=0)

    def after(r: int, secs: dict[Variant, list[float]]) -> None:
        done = ", ".join(f"{p}/{lay} {secs[(p, lay)][-1]:.2f} s" for p, lay in variants)
        print(f"  repeat {r + 1}/{args.repeats}: " + done, flush=True)

    return interleave({v: functools.partial(one_pass, v) for v in variants}, args.repeats, after)


def precision_ab(args: argparse.Namespace, device: torch.device) -> list[dict[str, object]]:
    """Per variant: s/image, MP/s, speed-up over fp32/NCHW, Set5 PSNR-Y and its distance from fp32."""
    from src.inference.checkpoint import load_checkpoint

    model = load_checkpoint(args.ckpt)
    paths, lrs, out_mp = load_set5(args.set5, model.scale)
    variants = [("fp32", "nchw")] + [(p, "channels_last") for p in args.precisions]
    secs = time_variants(args, model, lrs, device, variants)
    psnr = {v: set5_psnr(model, paths, device, v) for v in variants}
    base = variants[0]
    fp32 = psnr.get(("fp32", "channels_last"), psnr[base])
    rows = []
    for v in variants:
        speedup = median(ratios(secs[base], secs[v]))
        rows.append(
            {
                "precision": v[0],
                "layout": v[1],
                "s/image": f"{median(secs[v]) / len(lrs):.3f}",
                "MP/s": f"{out_mp / median(secs[v]):.3f}",
                f"x vs {base[0]}/{base[1]}": f"{speedup:.2f}",
                f"Set5 x{model.scale} PSNR-Y": f"{psnr[v]:.4f}",
                "dB vs fp32": f"{psnr[v] - fp32:+.4f}",
                "2x and 0.02 dB": "yes" if speedup >= 2 and abs(psnr[v] - fp32) <= 0.02 else "no",
            }
        )
    return rows


def run_ckpt(args: argparse.Namespace, device: torch.device) -> None:
    args.precisions = args.precisions or (["fp32", "bf16"] + (["fp16"] if device.type != "cpu" else []))
    print(head(describe(device, "fp32")) + f"{load_note()}; {args.ckpt}; Set5 {args.set5}", flush=True)
    print_rows(precision_ab(args, device), args.json, CKPT_NOTE)


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


def resize_row(shape: tuple[int, ...], calls: int, repeats: int, device: torch.device) -> dict[str, object]:
    """Us per downscale+upsample of one batch shape, before vs now (interleaved medians), and their largest difference."""
    hr = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(device)

    def before() -> torch.Tensor:
        return _old_imresize(_old_imresize(hr, 0.5, True), 2.0).clamp_(0, 1)

    def now() -> torch.Tensor:
        return upsample(downscale(hr, 2), 2, "bicubic")

    ways = {"before": before, "now": now}
    secs = interleave({k: functools.partial(seconds_per_call, fn, device, calls) for k, fn in ways.items()}, repeats)
    return {
        "batch": "x".join(map(str, shape)),
        "before us": f"{median(secs['before']) * 1e6:.0f}",
        "now us": f"{median(secs['now']) * 1e6:.0f}",
        "now/before": f"{median(ratios(secs['now'], secs['before'])):.3f}",
        "max |diff|": f"{(before() - now()).abs().max().item():.1e}",
    }


def run_resize(args: argparse.Namespace, device: torch.device) -> None:
    print(head(describe(device, "fp32")) + f"{load_note()}; medians of {args.repeats} repeats", flush=True)
    # A training batch and a photo.
    rows = [resize_row(shape, calls, args.repeats, device) for shape, calls in (((16, 3, 48, 48), 200), ((1, 3, 480, 640), 10))]
    print(table(rows, list(rows[0])))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_harness_args(ap)
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
    ap.add_argument("--calls", type=int, default=2, help="calls per timed span")
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] | mps (default cpu)")
    ap.add_argument("--quick", action="store_true", help="tiny run (LR 64, tile 32, 1 repeat): checks it works")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.quick:
        args.lr_size, args.tile, args.repeats, args.calls = 64, 32, 1, 1
    set_threads(args.threads)
    os.chdir(ROOT)
    device = select_device(args.device)
    args.precision = ALIASES.get(args.precision, args.precision)
    resolve_precision(args.precision, device)
    run = run_resize if args.resize else run_ckpt if args.ckpt else run_speed
    run(args, device)


if __name__ == "__main__":
    main()
