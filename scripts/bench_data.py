"""Training patches per second of each data path: per-sample JPEG decoding, the store, the on-device crops,
and the store with a degradation made in the loader (``degradation=jpeg|noise|real``).

    python scripts/bench_data.py                          # 200 synthetic 1000x700 JPEGs in a temp dir
    python scripts/bench_data.py --photos DIR --store STORE   # photos (baseline) and a store made from them
    python scripts/bench_data.py --device cuda            # the on-device path on a GPU
    python scripts/bench_data.py --patch-sizes 48 96 --degradations jpeg noise real --workers 0 2

Every path is timed ``--repeats`` times for ``--seconds`` each; the median is printed. The store
path uses the DataModule exactly as ``data=store`` builds it, with the defaults of
``conf/data/_patches.yaml`` (batch size, loader workers, scale); only the patch size changes. A
degradation row builds the degradation from its ``conf/degradation/<name>.yaml`` and runs the store
path with ``--workers`` loader processes: its LR images are made in the loader, on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning.fabric.utilities.apply_func import move_data_to_device

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.data.datamodule import SRDataModule  # noqa: E402
from src.data.images import list_images, load_rgb  # noqa: E402
from src.data.prepare import prepare  # noqa: E402
from src.data.synthetic import write_jpegs  # noqa: E402


def rate(step: Callable[[], int], seconds: float, device: torch.device, clock: Callable[[], float] = time.perf_counter) -> float:
    """Patches per second of calling ``step`` (returns patches made) for about ``seconds``, after a warm-up."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    n, start = 0, clock()
    while clock() - start < seconds:
        n += step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (clock() - start)


def decode_baseline(paths: list[Path], p: int) -> Callable[[], int]:
    """One patch per decoded JPEG: what a loader that reads files per sample does."""
    rng = np.random.default_rng(0)

    def step() -> int:
        img = load_rgb(paths[rng.integers(len(paths))])
        y, x = rng.integers(0, img.shape[0] - p + 1), rng.integers(0, img.shape[1] - p + 1)
        torch.from_numpy(np.ascontiguousarray(img[y : y + p, x : x + p]))
        return 1

    return step


def _endless(loader: Iterable) -> Iterator:
    # Epoch after epoch, as training draws them (itertools.cycle would replay the first epoch's items).
    while True:
        yield from loader


def store_loader(store: Path, defaults: dict, p: int) -> Callable[[], int]:
    dm = SRDataModule.from_store(str(store), **{**defaults, "patch_size": p})
    dm.setup("fit")
    batches = _endless(dm.train_dataloader())

    def step() -> int:
        return next(batches).shape[0]

    return step


def degraded_loader(store: Path, defaults: dict, p: int, name: str, workers: int) -> Callable[[], int]:
    """The store path with ``degradation=<name>``: the loader hands out (HR, LR) pairs, the LR made on the CPU."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    degradation = instantiate(OmegaConf.load(ROOT / "conf" / "degradation" / f"{name}.yaml"))
    options = {**defaults, "patch_size": p, "num_workers": workers}
    dm = SRDataModule.from_store(str(store), degradation=degradation, **options)
    dm.setup("fit")
    batches = _endless(dm.train_dataloader())

    def step() -> int:
        hr, _ = next(batches)
        return hr.shape[0]

    return step


def device_crops(store: Path, defaults: dict, p: int, device: torch.device) -> Callable[[], int]:
    dm = SRDataModule.from_store(str(store), on_device=True, **{**defaults, "patch_size": p})
    dm.setup("fit")
    plans = _endless(dm.train_dataloader())

    def step() -> int:
        plan = next(plans)
        # What Lightning does per batch: move the (tiny) plan to the device, then the hook cuts the crops.
        return dm.on_after_batch_transfer(move_data_to_device(plan, device), 0).shape[0]

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, help="JPEG folder (default: synthetic 1000x700 JPEGs in a temp dir)")
    ap.add_argument("--store", type=Path, help="store prepared from --photos (default: prepared in a temp dir)")
    ap.add_argument("--images", type=int, default=200, help="synthetic photos to make without --photos")
    ap.add_argument("--patch-sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--device-batch-sizes", type=int, nargs="+", default=[16, 128], help="batch sizes of the on-device rows")
    ap.add_argument("--degradations", nargs="*", default=["jpeg"], help="conf/degradation/ names made in the loader")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader processes of the degradation rows")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="cpu: this process's CPU time (the work done, whatever else runs on the machine); rows with loader "
        "processes are then left out, their time being spent in other processes",
    )  # fmt: skip
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:  # synthetic photos and store, removed at the end
        bench(args, Path(tmp))


def bench(args: argparse.Namespace, tmp: Path) -> None:
    device = torch.device(args.device)
    photos = args.photos or write_jpegs(tmp / "photos", args.images)
    store = args.store
    if store is None:
        store = tmp / "store"
        prepare(photos, store, progress=False)
    # Plain YAML (seed is an interpolation there): also runs where Hydra/OmegaConf are not installed.
    defaults = yaml.safe_load((ROOT / "conf/data/_patches.yaml").read_text()) | {"seed": 0}
    del defaults["degradation"]  # an interpolation of the run's degradation; the rows below pass their own
    paths = list_images(photos)
    print(f"photos {photos} ({len(paths)}), store {store}, device {device}, torch threads {torch.get_num_threads()}")
    loader = f"scale {defaults['scale']}, batch_size {defaults['batch_size']}, num_workers {defaults['num_workers']}"
    loader += f", cut_mb {defaults['cut_mb']}"
    print(f"defaults: {loader}; median of {args.repeats} x {args.seconds:g} s, {args.clock} clock")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"{'path':<32}" + "".join(f"{f'{p}x{p} patches/s':>20}" for p in args.patch_sizes))
    rows = {
        "per-sample JPEG decode": lambda p: decode_baseline(paths, p),
        "store (data=store)": lambda p: store_loader(store, defaults, p),
    }
    for b in args.device_batch_sizes:
        # Bind b now: each row builds its module with its own batch size.
        name = f"on-device ({device.type}), batch {b}"
        rows[name] = lambda p, b=b: device_crops(store, defaults | {"batch_size": b}, p, device)
    for deg in args.degradations:
        for w in args.workers if args.clock == "wall" else [0]:
            rows[f"store + {deg}, {w} workers"] = lambda p, deg=deg, w=w: degraded_loader(store, defaults, p, deg, w)
    for name, make in rows.items():
        cells = []
        for p in args.patch_sizes:
            step = make(p)
            seconds = args.seconds / 3 if name.startswith("per-sample") else args.seconds
            cells.append(statistics.median(rate(step, seconds, device, clock) for _ in range(args.repeats)))
        print(f"{name:<32}" + "".join(f"{c:>20,.0f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
