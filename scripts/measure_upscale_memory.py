"""Peak memory (max RSS) and time of ``python -m src.upscale`` on a generated large photo.

    python scripts/measure_upscale_memory.py --ckpt outputs/results/cnn_deep_x2_6min/checkpoints/last.ckpt
    python scripts/measure_upscale_memory.py --ckpt CKPT --size 4000x3000 --tile 192 --tile 0

Without --ckpt a random-weight cnn_deep x2 checkpoint is written (memory and speed do not depend on
the weights). Each --tile value is one run; 0 means the whole image in one pass. Max RSS comes from
the child's rusage (what ``/usr/bin/time -v`` reports as "Maximum resident set size").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_photo(path: Path, w: int, h: int) -> None:
    """A photo-sized JPEG with gradients and texture (the content does not change memory or time)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(xx / (97 + 13 * c)) * np.cos(yy / (61 + 7 * c)) for c in range(3)], -1)
    base += rng.normal(0, 8, base.shape).astype(np.float32)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, quality=92)


def random_ckpt(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from src.arch import CNNDeep

    net = CNNDeep()
    hp = {"name": "cnn_deep_random", "net": {"_target_": "src.arch.CNNDeep"}, "scale": 2, "loss": "mse"}
    torch.save({"hyper_parameters": hp, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)


def run(photo: Path, ckpt: Path, out: Path, tile: int) -> tuple[float, float]:
    """(max RSS in MiB, wall seconds) of one upscale run in a child process."""
    cmd = [sys.executable, "-m", "src.upscale", str(photo), "--ckpt", str(ckpt), "--out", str(out), "--tile", str(tile)]
    t0 = time.perf_counter()
    pid = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: upscale failed with status {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss / 1024, wall  # Linux reports KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path)
    p.add_argument("--size", default="4000x3000", help="WxH of the generated photo")
    p.add_argument("--tile", type=int, action="append", help="LR tile side(s) to measure (default: 192)")
    args = p.parse_args()
    w, h = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = tmp / f"photo_{w}x{h}.jpg"
        make_photo(photo, w, h)
        ckpt = args.ckpt or tmp / "random.ckpt"
        if args.ckpt is None:
            random_ckpt(ckpt)
        for tile in args.tile or [192]:
            rss, wall = run(photo, ckpt, tmp / "out.png", tile)
            mpx = w * h / 1e6
            print(f"{w}x{h} ({mpx:.1f} MP in), tile={tile}: max RSS {rss:.0f} MiB, {wall:.1f} s ({mpx / wall:.3f} MP/s in)")
    print(f"(this machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
