"""The noise models' table (docs/models.md, "Noise levels"): each model on Set5 and Set14 with clean
MATLAB-bicubic LR and with that LR saved as JPEG at each quality (Pillow, 4:2:0): PSNR-Y / SSIM-Y.

    python scripts/noise_table.py                                    # bundled x2: cnn_deep and the noise models
    python scripts/noise_table.py --models cnn_deep cnn_deep_noise3 --qualities 50 --bench ../shared/sr_benchmarks

Every number is one run of ``python -m src.evaluate pretrained=<model> scale=<s> [degradation=jpeg
degradation.quality=<q>]`` (printed to stderr as it runs), read from its summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def evaluate(model: str, scale: int, quality: int | None, sets: list[Path], out: Path) -> dict:
    deg = [] if quality is None else ["degradation=jpeg", f"degradation.quality={quality}"]
    roots = "[" + ",".join(str(s) for s in sets) + "]"
    cmd = [sys.executable, "-m", "src.evaluate", f"pretrained={model}", f"scale={scale}", *deg, f"data.root={roots}"]
    cmd.append("wandb=null")
    print("python " + " ".join(cmd[1:]), file=sys.stderr)
    res = subprocess.run([*cmd, f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"error: python {' '.join(cmd[1:])}: {res.stderr.strip().splitlines()[-1]}")
    return json.loads((out / "summary.json").read_text())["sets"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cnn_deep", "cnn_deep_noise3", "edsr_baseline_noise1"])
    p.add_argument("--qualities", nargs="+", type=int, default=[90, 50])
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "sr_benchmarks", help="holds Set5/ and Set14/")
    args = p.parse_args()
    sets = [args.bench / "Set5", args.bench / "Set14"]
    print(f"| model | LR (x{args.scale}) | Set5 PSNR-Y / SSIM-Y | Set14 PSNR-Y / SSIM-Y |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for quality in [None, *args.qualities]:
            lr = "clean" if quality is None else f"JPEG q{quality}"
            for i, model in enumerate(args.models):
                means = evaluate(model, args.scale, quality, sets, Path(tmp) / f"{model}-{quality}")
                rows = [("bicubic", "bicubic_")] if i == 0 else []  # from the same LR: the same for every model
                for name, key in [*rows, (model, "")]:
                    cells = " | ".join(f"{means[s.name][f'{key}psnr_y']:.2f} / {means[s.name][f'{key}ssim_y']:.4f}" for s in sets)
                    print(f"| {name} | {lr} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
