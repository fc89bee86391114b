"""Export a checkpoint to ONNX (LR image in, SR image out, any height and width) or to safetensors.

    python -m src.export --ckpt model.ckpt --out model.onnx
    python -m src.export --ckpt model.ckpt --out model.safetensors         # --format from the suffix
    python -m src.export --ckpt model.ckpt --out model.onnx --opset 18
    python -m src.export --model cnn_deep --scale 3 --out cnn_deep_x3.onnx      # a bundled model
    python -m src.export --ckpt model.ckpt --out model.onnx --device cuda       # parity against the net on a GPU

The graph takes ``lr`` (N, 3, h, w) float in [0, 1] and returns ``sr`` (N, 3, h*scale, w*scale),
unclamped, the same as ``src.inference.tiling.sr_whole``. The pre-upsampling is part of the graph:
src.degrade resizes with size-dependent matrices (not exportable for dynamic sizes), so here the
MATLAB bicubic kernel is written as its ``scale**2`` fixed 5x5 phase filters + pixel shuffle, which
is the same linear map (edge replication included) for any size.

After writing, a parity check runs the file in onnxruntime (CPU) on one odd-sized random LR image
and compares it with a reference that shares no code with the exported graph's assembly: the
``h*scale x w*scale`` size computed from the LR image alone, and srlab's tiled inference in fp32 on
``--device`` (small tiles, the MATLAB-exact resize, each tile's size checked). It prints the largest
difference and fails (status 1) above ``PARITY_ATOL``; ``--no-check`` skips it.

``--format safetensors`` writes the weights and srlab's header (``src.inference.model_file.write_safetensors``):
a net of a published layout (``compact``, or one loaded from published weights) keeps its key names,
so spandrel-based tools (chaiNNer, ...) load it; its check reloads the file and compares outputs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from src.arch.pipeline import SRPipeline
from src.degrade import resize_matrix
from src.devices import DEVICE_CHOICES, describe, select_device
from src.errors import SrlabError
from src.inference.checkpoint import LoadedModel, load_checkpoint, load_model
from src.inference.model_file import write_safetensors
from src.inference.tiling import sr_whole, upscale_tensor
from src.weights import SAFETENSORS_SUFFIX

# Largest |onnxruntime - PyTorch| accepted on [0, 1] images: two fp32 pipelines that order their sums
# differently agree to ~1e-6 here; a wrong graph is off by far more than 1e-4.
PARITY_ATOL = 1e-4


class BicubicUp(nn.Module):
    """MATLAB ``imresize(x, scale)`` (bicubic, integer upscale) as a conv: export-friendly, any size."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        # Output pixel s*k+p of the 1-D resize reads inputs k-2..k+2: read the 5 weights of each phase p
        # off the reference matrix, far from its edges (they do not depend on the length).
        n = 16
        m = torch.from_numpy(resize_matrix(n, n * scale, float(scale)))
        k = n // 2
        taps = torch.stack([m[scale * k + p, k - 2 : k + 3] for p in range(scale)]).float()  # (s, 5)
        # 2-D phase (py, px) -> channel py*s + px, as pixel_shuffle expects; one group per color channel.
        w2d = torch.einsum("ai,bj->abij", taps, taps).reshape(scale * scale, 1, 5, 5)
        self.register_buffer("weight", w2d.repeat(3, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")  # replicate = MATLAB's clipped edge indices
        return F.pixel_shuffle(F.conv2d(x, self.weight, groups=3), self.scale).clamp(0, 1)


def exported_pipeline(net: nn.Module, scale: int) -> SRPipeline:
    """The SR pipeline with its bicubic resize (of a pre-upsampling net's input, or of a luma net's
    chroma) as :class:`BicubicUp`, which traces for any image size."""
    return SRPipeline(net, scale, BicubicUp(scale) if scale > 1 else None)


def export_onnx(ckpt: str | Path, out: str | Path, opset: int = 17) -> Path:
    """Write the ONNX file for ``ckpt``; height and width are dynamic axes."""
    model = load_checkpoint(ckpt)
    wrapper = exported_pipeline(model.net, model.scale).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 3, 24, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, not actionable here
        torch.onnx.export(
            wrapper,
            (example,),
            str(out),
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch", 2: "out_height", 3: "out_width"}},
            opset_version=opset,
            dynamo=False,
        )
    return out


PARITY_TILE = 16  # LR px: the reference assembles the image from several tiles, unlike the graph


def parity(onnx_path: str | Path, ckpt: str | Path, device: torch.device, size: tuple[int, int] = (37, 29)) -> float:
    """Largest |onnxruntime - PyTorch fp32 on ``device``| over one random LR image of ``size`` (h, w);
    infinite when the exported graph's output is not ``h*scale x w*scale``."""
    import onnxruntime as ort

    model = load_checkpoint(ckpt)
    lr = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    onnx_run = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = onnx_run.run(None, {"lr": lr.numpy()})[0]
    if out.shape[-2:] != (size[0] * model.scale, size[1] * model.scale):
        return float("inf")
    ref = upscale_tensor(model.net, lr, model.scale, PARITY_TILE, device=device, precision="fp32").numpy()
    if out.shape != ref.shape:
        return float("inf")
    return float(abs(out - ref).max())


FORMATS = ("onnx", "safetensors")


def _export_safetensors(model: LoadedModel, out: Path, check: bool) -> int:
    """Write ``out``; with ``check``, load it back as srlab does and compare outputs (status 1 if they differ)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    layout = write_safetensors(model, out)
    print(out)
    print(f"layout: {layout}", file=sys.stderr)
    if not check:
        return 0
    lr = torch.rand(1, 3, 23, 19, generator=torch.Generator().manual_seed(0))
    diff = float((sr_whole(load_checkpoint(out).net, lr, model.scale) - sr_whole(model.net, lr, model.scale)).abs().max())
    if not diff <= PARITY_ATOL:
        print(f"error: {out}: reloaded, it differs from the source by {diff:.3g} (> {PARITY_ATOL})", file=sys.stderr)
        return 1
    print(f"parity: max |reloaded - source| = {diff:.2g} (<= {PARITY_ATOL})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.export", description="Export an srlab checkpoint to ONNX (dynamic H/W).")
    p.add_argument("--ckpt", type=Path, help="a checkpoint written by src.train or a model file (python -m src.model_file)")
    p.add_argument("--model", help="or a bundled model by name: cnn_deep, cnn_small, cnn_medium, waifu2x (src/pretrained/)")
    p.add_argument("--scale", type=int, help="the bundled model's scale (default 2)")
    p.add_argument("--out", required=True, type=Path, help="the file to write (.onnx or .safetensors)")
    p.add_argument("--format", choices=FORMATS, help="onnx or safetensors (default: by the suffix of --out, else onnx)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--device", default="auto", help=f"PyTorch side of the parity check: {DEVICE_CHOICES} (default auto)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check (onnxruntime, or the reloaded file)")
    args = p.parse_args(argv)
    fmt = args.format or ("safetensors" if args.out.suffix.lower() == SAFETENSORS_SUFFIX else "onnx")
    try:
        device = None if args.no_check else select_device(args.device)
        model = load_model(args.ckpt, args.model, args.scale)
        if fmt == "safetensors":
            return _export_safetensors(model, args.out, check=device is not None)
        path = export_onnx(model.path, args.out, args.opset)
        source = model.path
    except SrlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    if device is None:
        return 0
    try:
        diff = parity(path, source, device)
    except ImportError:
        print("note: parity check skipped: onnxruntime is not installed", file=sys.stderr)
        return 0
    where = describe(device, "fp32")
    if not diff <= PARITY_ATOL:
        print(f"error: {path}: onnxruntime differs from PyTorch on {where} by {diff:.3g} (> {PARITY_ATOL})", file=sys.stderr)
        return 1
    print(f"parity: max |onnxruntime - PyTorch on {where}| = {diff:.2g} (<= {PARITY_ATOL})")
    return 0
