"""Where inference runs and in what precision: ``--device auto|cpu|cuda[:N]|mps``, ``--precision fp32|bf16|fp16``.

``auto`` takes CUDA, then MPS, then the CPU. A device that is not there is a :class:`ConfigError`
naming the option, so entry points print it as one line.

Reduced precision means autocast around the net only: its convolutions run in bf16/fp16 while the
pre-upsampling, the residual sum (``ConvStack`` adds its fp32 input to the net's output, which
promotes to fp32) and the 8-bit rounding of the result stay fp32. The default per device is the
fastest precision whose Set5 x2 PSNR-Y stays within 0.02 dB of fp32 (docs/performance.md):

- CPU: bf16 where oneDNN has native bf16 kernels (AVX-512 BF16 / AMX); elsewhere bf16 is emulated,
  several times slower than fp32, so fp32.
- CUDA: bf16 where the GPU has it (Ampere and later), else fp16: tensor cores, half the memory; the
  nets' activations are images in [0, 1] and their features, far from fp16's range limits.
- MPS: fp16, the Apple GPU's fast type (its bf16 support depends on the OS version).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

from src.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (oneDNN: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def select_device(spec: str | None = "auto", option: str = "--device") -> torch.device:
    """The device ``spec`` names, checked to exist; ``auto`` (or None): CUDA, then MPS, then CPU."""
    name = str(spec or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if mps_available() else torch.device("cpu")
    m = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", name)
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise ConfigError(f"{option}={spec}: not a device (use one of {DEVICE_CHOICES})")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not mps_available():
            why = "it needs Apple silicon and a torch built with MPS"
            raise ConfigError(f"{option}={spec}: MPS is not available here ({why}); use cpu or auto")
        return torch.device("mps")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"{option}={spec}: CUDA is not available ({why}, torch {torch.__version__}); use cpu or auto")
    count = torch.cuda.device_count()
    i = torch.cuda.current_device() if index is None else int(index)
    if i >= count:
        raise ConfigError(f"{option}={spec}: there are {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", i)


def device_name(device: torch.device) -> str:
    """What a run's summary calls its device: the GPU's name, ``mps``, or ``cpu``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def default_precision(device: torch.device) -> str:
    """The fastest precision within 0.02 dB of fp32 on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def resolve_precision(precision: str | None, device: torch.device, option: str = "--precision") -> str:
    """``precision`` checked against ``device``; None or ``auto``: :func:`default_precision`."""
    name = str(precision or "auto").strip().lower()
    if name == "auto":
        return default_precision(device)
    if name not in PRECISIONS:
        raise ConfigError(f"{option}={precision}: not a precision (use one of {', '.join(PRECISIONS)} or auto)")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{option}=bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp16 or fp32")
    return name


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """Run the block's net in ``precision`` on ``device``: autocast for bf16/fp16; true fp32 otherwise.

    On CUDA "fp32" would still let cuDNN and cuBLAS use TF32 (10-bit mantissas) by default; the
    block turns that off so fp32 means fp32, and restores the settings after.
    """
    if precision != "fp32":
        with torch.autocast(device.type, dtype=DTYPES[precision]):
            yield
        return
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def describe(device: torch.device, precision: str) -> str:
    """One line for logs and summaries: ``cuda:0 (NVIDIA H200), bf16`` / ``cpu (AVX2, 2 threads), fp32``."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        cap = torch.backends.cpu.get_cpu_capability()
        what = f"{cap}{' + bf16' if cpu_has_bf16() else ''}, {torch.get_num_threads()} of {os.cpu_count()} threads"
    else:
        what = "Apple GPU"
    return f"{device} ({what}), {precision}"
