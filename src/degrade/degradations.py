"""The degradations a run trains and evaluates on (``conf/degradation/``): HR -> LR, uint8 in and out.

- ``Bicubic``: the paper's MATLAB-style bicubic downscale (``src.degrade.downscale``). It runs on the
  training device inside ``SRModule``, as it always has; the loader only ships HR patches.
- ``JPEG``, ``Noise``: the bicubic LR image, then saved as a JPEG / given sensor noise.
- ``Real``: a short Real-ESRGAN-style chain from the HR image: blur -> resize -> noise -> JPEG, once or
  twice, the last pass landing at the LR size.

All but ``Bicubic`` need the CPU (Pillow's codec): they run in the data loader, per image or patch,
each with its own generator (``src.degrade.draws.rng_for``), so the LR images are a pure function
of the seed and where the image or patch sits in the data stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from src.degrade import downscale, steps, to_float
from src.degrade.draws import Span
from src.errors import ConfigError, user_error

OPTION = "degradation"  # the config group: every option in an error message is named under it
# waifu2x's noise levels, 0 (light JPEG) to 3 (heavy): a model's level is on its card (train.yaml: noise_level).
NOISE_LEVELS = (0, 1, 2, 3)


def _probability(value: Any, key: str) -> float:
    span = Span(value, f"{OPTION}.{key}", 0.0, 1.0)
    if not span.fixed:
        raise ConfigError(f"{OPTION}.{key}={span.plain()}: must be one number between 0 and 1")
    return span.lo


def _lr_size(hr_shape: Sequence[int], scale: int) -> tuple[int, int]:
    return math.ceil(hr_shape[0] / scale), math.ceil(hr_shape[1] / scale)


class Degradation:
    """HR ``(H, W, C)`` uint8 -> LR ``(ceil(H/scale), ceil(W/scale), C)`` uint8 (C = 3, or 1 for a gray image).

    ``on_device``: the LR is made from the HR batch on the training device (``SRModule.degrade``)
    instead of in the loader. ``eval_fixed``: settings that must be one number when scoring a
    benchmark (a documented protocol, not a draw).
    """

    name = "?"
    on_device = False
    eval_fixed: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The options as config writes them (for summaries, W&B and the report)."""
        return {}

    def describe(self) -> str:
        """One line: the name and every setting."""
        body = ", ".join(f"{k} {v if not isinstance(v, list) else f'{v[0]:g}-{v[1]:g}'}" for k, v in self.settings().items())
        return f"{self.name} ({body})" if body else self.name

    def check_for_evaluation(self) -> None:
        """Refuse, in one line, a drawn setting that a benchmark protocol must fix."""
        for key in self.eval_fixed:
            span: Span = getattr(self, key)
            if not span.fixed:
                raise ConfigError(
                    f"{span.option}=[{span.lo:g}, {span.hi:g}]: evaluation uses one value, not a range "
                    f"(e.g. {span.option}={span.hi:g})"
                )

    def lr(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """One HR image -> its LR image."""
        return self.lr_batch(torch.from_numpy(np.ascontiguousarray(hr))[None], scale, [rng])[0].numpy()

    def lr_batch(self, hr: torch.Tensor, scale: int, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
        """``(N, H, W, C)`` uint8 HR -> ``(N, h, w, C)`` uint8 LR; image ``i`` draws from ``rngs[i]``."""
        raise NotImplementedError


def bicubic_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``(N, H, W, C)`` uint8 -> the MATLAB-bicubic LR, uint8 NHWC (exact: ``downscale`` rounds to 8 bits)."""
    lr = downscale(to_float(hr), scale)
    return lr.mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class Bicubic(Degradation):
    """The paper's degradation and srlab's default; made on the training device (``src.degrade.downscale``)."""

    name = "bicubic"
    on_device = True

    def lr_batch(self, hr: torch.Tensor, scale: int, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
        return bicubic_lr(hr, scale)


class AfterBicubic(Degradation):
    """The bicubic LR image, then ``damage`` on each image: what ``src.evaluate`` applies to a benchmark's LR."""

    def damage(self, lr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def lr_batch(self, hr: torch.Tensor, scale: int, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
        clean = bicubic_lr(hr, scale).numpy()
        return torch.from_numpy(np.stack([self.damage(im, rng) for im, rng in zip(clean, rngs, strict=True)]))


class JPEG(AfterBicubic):
    """The bicubic LR saved as a baseline JPEG by Pillow at a quality drawn per image from ``quality``.

    Args:
        quality: 1-100; one number, or ``[lo, hi]`` drawn uniformly (whole numbers, both included).
        subsampling: chroma subsampling, ``4:2:0`` (what cameras and photo sites write), ``4:2:2`` or ``4:4:4``.
        clean_prob: chance that an image is left clean (no JPEG): a model for light JPEG noise that must
            also keep clean photos sharp sees both.
    """

    name = "jpeg"
    eval_fixed = ("quality",)

    # clean_prob's default: the runs written before the option have none in their config (resume reads it).
    def __init__(self, quality: int | Sequence[int], subsampling: str, clean_prob: float = 0.0) -> None:
        self.quality = Span(quality, f"{OPTION}.quality", 1, 100, integer=True)
        if subsampling not in steps.SUBSAMPLING:
            raise ConfigError(f"{OPTION}.subsampling={subsampling}: must be one of {', '.join(steps.SUBSAMPLING)}")
        self.subsampling = subsampling
        self.clean_prob = _probability(clean_prob, "clean_prob")

    def settings(self) -> dict[str, Any]:
        clean = {"clean_prob": self.clean_prob} if self.clean_prob else {}
        return {"quality": self.quality.plain(), "subsampling": self.subsampling, **clean}

    def check_for_evaluation(self) -> None:
        super().check_for_evaluation()
        if self.clean_prob:
            raise ConfigError(f"{OPTION}.clean_prob={self.clean_prob:g}: evaluation JPEG-encodes every image; leave it 0")

    def damage(self, lr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Drawn only when asked for, so the quality draws of clean_prob=0 stay what they were.
        if self.clean_prob and rng.random() < self.clean_prob:
            return lr
        return steps.jpeg(lr, self.quality.draw(rng), self.subsampling)


class Noise(AfterBicubic):
    """The bicubic LR with sensor noise of a strength drawn per image (``src.degrade.steps.add_noise``).

    Args:
        gaussian: read noise, standard deviation in 8-bit levels (>= 0): one number or ``[lo, hi]``.
        poisson: shot noise, 8-bit levels per photon (>= 0): one number or ``[lo, hi]``; 0: none.
        gray_prob: chance that an image's noise is the same in every channel (luma noise).
    """

    name = "noise"
    eval_fixed = ("gaussian", "poisson")

    def __init__(self, gaussian: float | Sequence[float], poisson: float | Sequence[float], gray_prob: float) -> None:
        self.gaussian = Span(gaussian, f"{OPTION}.gaussian", 0.0)
        self.poisson = Span(poisson, f"{OPTION}.poisson", 0.0)
        self.gray_prob = _probability(gray_prob, "gray_prob")

    def settings(self) -> dict[str, Any]:
        return {"gaussian": self.gaussian.plain(), "poisson": self.poisson.plain(), "gray_prob": self.gray_prob}

    def damage(self, lr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sigma, gain = self.gaussian.draw(rng), self.poisson.draw(rng)
        gray = bool(rng.random() < self.gray_prob)
        return steps.add_noise(lr, sigma, gain, gray, rng)


class Real(Degradation):
    """A Real-ESRGAN-style chain from the HR image, every setting drawn per image: one pass of blur ->
    resize -> noise -> JPEG, or (with chance ``twice_prob``) two, the first landing at ``resize`` times
    the LR size, the last at the LR size.

    Args:
        blur: Gaussian blur sigma in px of the image blurred (>= 0): one number or ``[lo, hi]``.
        resize: the first of two passes resizes to this factor of the LR size (> 0).
        gaussian, poisson, gray_prob: noise, as in ``Noise``.
        quality: JPEG quality 1-100, as in ``JPEG``; ``subsampling`` likewise.
        twice_prob: chance of the second pass (Real-ESRGAN's "second-order" degradation).
    """

    name = "real"

    def __init__(
        self,
        blur: float | Sequence[float],
        resize: float | Sequence[float],
        gaussian: float | Sequence[float],
        poisson: float | Sequence[float],
        gray_prob: float,
        quality: int | Sequence[int],
        subsampling: str,
        twice_prob: float,
    ) -> None:
        self.blur = Span(blur, f"{OPTION}.blur", 0.0)
        self.resize = Span(resize, f"{OPTION}.resize", 0.01)
        self.noise = Noise(gaussian, poisson, gray_prob)
        self.jpeg = JPEG(quality, subsampling, clean_prob=0.0)  # the chain ends in a JPEG every time
        self.twice_prob = _probability(twice_prob, "twice_prob")

    def settings(self) -> dict[str, Any]:
        return {"blur": self.blur.plain(), "resize": self.resize.plain(), **self.noise.settings(),
                **self.jpeg.settings(), "twice_prob": self.twice_prob}  # fmt: skip

    def chain(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        target = _lr_size(hr.shape, scale)
        passes = 2 if rng.random() < self.twice_prob else 1
        img = hr
        for i in range(passes):
            img = steps.gaussian_blur(img, self.blur.draw(rng))
            f = self.resize.draw(rng) if i < passes - 1 else 1.0
            img = steps.resize(img, (max(2, round(target[0] * f)), max(2, round(target[1] * f))))
            img = self.noise.damage(img, rng)
            img = self.jpeg.damage(img, rng)
        return img

    def lr_batch(self, hr: torch.Tensor, scale: int, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.chain(im, scale, rng) for im, rng in zip(hr.numpy(), rngs, strict=True)]))


def build_degradation(cfg: Any, scale: int, on_device: bool = False, scale_option: str = "scale") -> Degradation:
    """The degradation a config describes (its options checked, one line on a bad one), refusing what
    cannot train or score: scale 1 with a degradation that keeps the HR image, or a loader degradation
    with crops cut on the device (``on_device``)."""
    import hydra  # here: the data path imports this module, and needs no Hydra without a config

    try:
        degradation = hydra.utils.instantiate(cfg)
    except Exception as e:  # Hydra wraps the constructor's ConfigError in its own InstantiationException
        cause = user_error(e)
        raise (cause if cause is not None else ConfigError(f"{OPTION}: cannot build it: {e}")) from None
    if not isinstance(degradation, Degradation):
        raise ConfigError(f"{OPTION}._target_={cfg.get('_target_')}: not a src.degrade.degradations.Degradation")
    if scale == 1 and degradation.on_device:
        raise ConfigError(f"{scale_option}=1 with {OPTION}={degradation.name}: the LR image would be the HR image itself; "
                          f"a denoiser needs {OPTION}=jpeg, noise or real")  # fmt: skip
    if on_device and not degradation.on_device:
        raise ConfigError(f"data.on_device=true: crops are cut on the training device, but {OPTION}={degradation.name} "
                          "runs on the CPU in the loader; use data.on_device=false")  # fmt: skip
    return degradation
