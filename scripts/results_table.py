"""Regenerate docs/results.md: our checkpoints on Set5/Set14 next to bicubic and the published nets.

    python scripts/results_table.py outputs/results/cnn_deep_x2_6min/checkpoints/last.ckpt --out docs/results.md
    python scripts/results_table.py CKPT1 CKPT2 ... --sets ../shared/sr_benchmarks/Set5 ../shared/sr_benchmarks/Set14

Scores follow src.evaluate's protocol (PSNR-Y / SSIM-Y, MATLAB-style bicubic LR, valid-window SSIM).
The training budget of each row is read from the run's summary.json (next to checkpoints/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.inference.checkpoint import load_checkpoint  # noqa: E402
from src.inference.scoring import evaluate_folders, set_means  # noqa: E402

# ../shared/README.md: published Set5 / Set14 x2 PSNR-Y (and the bicubic row, PSNR / SSIM).
PUBLISHED = [
    ("SRCNN (57K params)", 36.66, 32.45),
    ("FSRCNN (12K)", 37.00, 32.63),
    ("VDSR (665K)", 37.53, 33.03),
    ("EDSR (43M)", 38.11, 33.92),
]
NOTES = "<!-- notes: kept when the table is regenerated -->"
PUBLISHED_BICUBIC = {2: {"Set5": (33.66, 0.9299), "Set14": (30.24, 0.8688)}}


def _budget(ckpt: Path) -> str:
    summary = ckpt.parent.parent / "summary.json"
    if not summary.is_file():
        return "unknown (no summary.json beside the checkpoint)"
    s = json.loads(summary.read_text())
    return f"{s.get('fit_seconds', float('nan')):.0f} s, {s.get('steps')} steps, {s.get('device')}, {s.get('precision')}"


def main() -> None:
    p = argparse.ArgumentParser(description="Our checkpoints on benchmark sets, as a markdown table.")
    p.add_argument("ckpts", nargs="+", type=Path)
    default_sets = [str(ROOT.parent / "shared" / "sr_benchmarks" / n) for n in ("Set5", "Set14")]
    p.add_argument("--sets", nargs="+", default=default_sets)
    p.add_argument("--out", type=Path, help="write the markdown here (default: print it)")
    args = p.parse_args()
    names = [Path(s).name for s in args.sets]
    head = "| model | " + " | ".join(f"{n} PSNR / SSIM" for n in names) + " | training budget | checkpoint |\n"
    head += "|---|" + "---|" * len(names) + "---|---|\n"
    rows, scales = [], set()
    bicubic = None
    for ckpt in args.ckpts:
        model = load_checkpoint(ckpt)
        scales.add(model.scale)
        means = set_means(evaluate_folders(args.sets, model.scale, model, tile=192))
        bicubic = bicubic or means
        cells = " | ".join(f"{means[n]['psnr_y']:.2f} / {means[n]['ssim_y']:.4f}" for n in names)
        rows.append(f"| {model.name} x{model.scale} | {cells} | {_budget(ckpt)} | `{ckpt}` |\n")
    scale = scales.pop() if len(scales) == 1 else None
    text = [f"# Benchmark results (x{scale})\n\n" if scale else "# Benchmark results\n\n"]
    text.append(
        "Regenerate: `python scripts/results_table.py " + " ".join(str(c) for c in args.ckpts) + " --out docs/results.md`.\n"
        "PSNR-Y (dB) / SSIM-Y, protocol of `src/inference/evaluate.py`. *bicubic (same LR)* upscales the RGB LR image the\n"
        "models get; *bicubic (published recipe)* is the literature's luma-channel recipe that reproduces the\n"
        "published row.\n\n"
    )
    text.append(head + "".join(rows))
    if bicubic:
        for label, key in (("bicubic (same LR)", "bicubic"), ("bicubic (published recipe)", "ref_bicubic")):
            cells = " | ".join(f"{bicubic[n][key + '_psnr_y']:.2f} / {bicubic[n][key + '_ssim_y']:.4f}" for n in names)
            text.append(f"| {label} | {cells} | | |\n")
    if scale in PUBLISHED_BICUBIC:
        pub = PUBLISHED_BICUBIC[scale]
        cells = " | ".join(f"{pub[n][0]:.2f} / {pub[n][1]:.4f}" if n in pub else "" for n in names)
        text.append(f"| bicubic, published | {cells} | | |\n")
    if scale == 2:
        for name, s5, s14 in PUBLISHED:
            cells = {"Set5": f"{s5:.2f}", "Set14": f"{s14:.2f}"}
            text.append(f"| {name}, published | " + " | ".join(cells.get(n, "") for n in names) + " | | |\n")
    out = "".join(text)
    if args.out and args.out.is_file() and NOTES in (old := args.out.read_text()):
        out += "\n" + old[old.index(NOTES) :]  # hand-written notes below the marker survive regeneration
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out)
    print(out)


if __name__ == "__main__":
    main()
