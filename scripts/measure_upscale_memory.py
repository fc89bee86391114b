"""Peak memory (max RSS) and speed of ``python -m src.upscale``: one large photo, or folders of many.

    python scripts/measure_upscale_memory.py --ckpt CKPT                                   # one 4000x3000 photo
    python scripts/measure_upscale_memory.py --ckpt CKPT --size 4000x3000 --tile 192 --tile 0
    python scripts/measure_upscale_memory.py --ckpt CKPT --files 10 --files 100            # flat in the number of files?
    python scripts/measure_upscale_memory.py --ckpt CKPT --files 20 --precision fp32 --precision bf16 --repeats 2

Without --ckpt a random-weight cnn_deep x2 checkpoint is written (memory and speed do not depend on
the weights). Every run is its own ``python -m src.upscale`` process; max RSS comes from that
child's rusage (what ``/usr/bin/time -v`` reports as "Maximum resident set size").

--files N: a folder of the first N of a set of generated photos of ~``--lr-pixels`` each (default
640x320, 0.82 MP of x2 output), in varied sizes and aspect ratios like Urban100's, so anything
kept per image size (resize weights, convolution primitives, heap fragments) shows up as growth.
Runs are interleaved over --repeats (A/B pairs see the same machine load); each line gives max RSS,
the wall time of the whole process (start-up and model load included) and upscale's own summary
line (images/s over the images alone).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_photo(path: Path, w: int, h: int, seed: int = 0) -> None:
    """A photo-sized image with gradients and texture (the content does not change memory or time)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(xx / (97 + 13 * c + seed)) * np.cos(yy / (61 + 7 * c)) for c in range(3)], -1)
    base += rng.normal(0, 8, base.shape).astype(np.float32)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, **({"quality": 92} if path.suffix == ".jpg" else {}))


def photo_sizes(n: int, pixels: int) -> list[tuple[int, int]]:
    """``n`` (w, h) of about ``pixels`` each, aspect ratios 0.5-2.2 (landscape and portrait), fixed seed."""
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(n):
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.2))))
        w = round((pixels * aspect) ** 0.5)
        sizes.append((w, max(16, round(pixels / w))))
    return sizes


def random_ckpt(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from src.arch import CNNDeep

    net = CNNDeep()
    hp = {"name": "cnn_deep_random", "net": {"_target_": "src.arch.CNNDeep"}, "scale": 2, "loss": "mse"}
    torch.save({"hyper_parameters": hp, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)


def run(inputs: Path, ckpt: Path, out: Path, extra: list[str]) -> tuple[float, float, str]:
    """(max RSS in MiB, wall seconds, upscale's last stderr line) of one upscale run in a child process."""
    cmd = [sys.executable, "-m", "src.upscale", str(inputs), "--ckpt", str(ckpt), "--out", str(out), *extra]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not a sum over earlier runs
        wall = time.perf_counter() - t0
        err.seek(0)
        lines = [line.strip() for line in err.read().splitlines() if line.strip()]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: upscale failed with status {os.waitstatus_to_exitcode(status)}: {lines[-1] if lines else ''}")
    return usage.ru_maxrss / 1024, wall, lines[-1] if lines else ""  # Linux reports KiB


def one_photo(args: argparse.Namespace, tmp: Path, ckpt: Path) -> None:
    w, h = map(int, args.size.lower().split("x"))
    photo = tmp / f"photo_{w}x{h}.jpg"
    make_photo(photo, w, h)
    for tile in args.tile or ["192"]:
        rss, wall, _ = run(photo, ckpt, tmp / "out.png", ["--tile", str(tile), *args.upscale_args])
        mpx = w * h / 1e6
        print(f"{w}x{h} ({mpx:.1f} MP in), tile={tile}: max RSS {rss:.0f} MiB, {wall:.1f} s ({mpx / wall:.3f} MP/s in)")


def folders(args: argparse.Namespace, tmp: Path, ckpt: Path) -> None:
    w, h = map(int, args.lr_pixels.lower().split("x"))
    sizes = photo_sizes(max(args.files), w * h)
    every = tmp / "all"
    every.mkdir()
    for i, (pw, ph) in enumerate(sizes):
        make_photo(every / f"img_{i:03d}.png", pw, ph, seed=i)
    out_px = sum(pw * ph for pw, ph in sizes) / len(sizes) * 4 / 1e6  # the x2 output, as the issue counts it
    print(f"{len(sizes)} PNG photos of {w * h / 1e6:.2f} MP on average ({out_px:.2f} MP of x2 output), varied sizes")
    for n in sorted(set(args.files)):  # each folder holds links to the first n photos
        (tmp / f"n{n}").mkdir()
        for p in sorted(every.iterdir())[:n]:
            (tmp / f"n{n}" / p.name).symlink_to(p)
    results: dict[tuple[int, str], list[tuple[float, float, str]]] = {}
    for _ in range(args.repeats):
        for n in sorted(set(args.files)):
            for prec in args.precision or [None]:
                extra = [*(["--precision", prec] if prec else []), *(["--tile", args.tile[0]] if args.tile else [])]
                res = run(tmp / f"n{n}", ckpt, tmp / "out", [*extra, *args.upscale_args])
                results.setdefault((n, prec or "default"), []).append(res)
                what = f"files={n:4d} precision={prec or 'default':7s}"
                print(f"  {what}: max RSS {res[0]:6.0f} MiB, {res[1]:6.1f} s  | {res[2]}", flush=True)
    print("medians:")
    for (n, prec), rows in results.items():
        rss, wall = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        what = f"files={n:4d} precision={prec:7s}"
        print(f"  {what}: max RSS {rss:6.0f} MiB ({rss / 1024:.2f} GiB), {wall:6.1f} s, {n / wall:.3f} images/s wall")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path)
    p.add_argument("--size", default="4000x3000", help="WxH of the generated photo (one-photo runs)")
    p.add_argument("--tile", action="append", help="tile option(s) to measure (one-photo runs: each one; default 192)")
    p.add_argument("--files", type=int, action="append", help="folder runs: number(s) of photos, e.g. --files 10 --files 100")
    p.add_argument("--lr-pixels", default="640x320", help="folder runs: the average input size (as WxH)")
    p.add_argument("--precision", action="append", help="folder runs: --precision value(s) to compare (default: upscale's)")
    p.add_argument("--repeats", type=int, default=1, help="folder runs: interleaved repeats of every setting")
    p.add_argument("upscale_args", nargs="*", help="more upscale options, after --")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.ckpt or tmp / "random.ckpt"
        if args.ckpt is None:
            random_ckpt(ckpt)
        if args.files:
            folders(args, tmp, ckpt)
        else:
            one_photo(args, tmp, ckpt)
    print(f"(this machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
