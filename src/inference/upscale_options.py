"""The options of ``python -m src.upscale``, each checked as it is parsed (errors are one line, exit 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from PIL import Image

from src.degrade.degradations import NOISE_LEVELS
from src.devices import DEVICE_CHOICES, PRECISIONS
from src.inference.tiling import DEFAULT_TILE


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``error: <what>``, exit 2) like every other refusal here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _tile_option(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto or a tile side in LR px (0: no tiling)")
    return value


def _suffix_option(text: str) -> str:
    if any(sep in text for sep in ("/", "\\", os.sep)) or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r}: a suffix is added to the file name, it cannot hold a folder")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m src.upscale", description="Upscale photos with a trained srlab model.")
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--ckpt", type=Path, help="a checkpoint written by src.train or a model file (python -m src.model_file)")
    p.add_argument(
        "--model",
        help="instead of --ckpt: a bundled model, e.g. cnn_deep (src/pretrained/<name>_x<scale>.pt); neither: the best "
        "bundled model at --scale (by validation PSNR-Y)",
    )
    p.add_argument("--scale", type=int, help="a bundled model's scale (default 2); with --ckpt: the scale it must have")
    p.add_argument(
        "--noise",
        type=int,
        choices=NOISE_LEVELS,
        help="JPEG noise to remove, waifu2x's levels: 0 light .. 3 heavy; picks the bundled model for that level at "
        "--scale (1: same size, denoise only; 2); with --ckpt/--model: the level the model must be trained for",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (or an output file name for one input)")
    p.add_argument("--ext", help="output format for every file, e.g. .png (default: the input's)")
    p.add_argument(
        "--suffix",
        type=_suffix_option,
        help="added to each output's name: --suffix _hd writes photo_hd.png (default _x<scale>; '' keeps the input's name)",
    )
    p.add_argument("--skip-existing", action="store_true", help="leave outputs that exist as they are (counted at the end)")
    p.add_argument("--device", default="auto", help=f"where the net runs: {DEVICE_CHOICES} (default auto: CUDA, MPS, CPU)")
    p.add_argument(
        "--precision",
        default="auto",
        help=f"the net's precision: {', '.join(PRECISIONS)} (default: the device's fastest within 0.02 dB of fp32)",
    )
    p.add_argument(
        "--tile",
        type=_tile_option,
        default="auto",
        help=f"LR px per tile side; auto (default): by memory ({DEFAULT_TILE} on the CPU, the whole image on a GPU "
        "where it fits); 0: no tiling",
    )
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x slower, a little sharper)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=Image.MAX_IMAGE_PIXELS,
        help=f"refuse inputs with more pixels (Pillow's decompression-bomb guard, default {Image.MAX_IMAGE_PIXELS}; 0: no limit)",
    )
    return p.parse_args(argv)
