"""Drawn degradation settings: a value or a ``[lo, hi]`` range from config, and the seeded draws.

Every draw comes from a generator seeded by a key (the run's seed, which split, the batch or image
index, the patch's crop), never by loader state: the same seed gives the same LR images with any
number of workers, from run to run and across a resume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from src.errors import ConfigError

# Streams of keys, so that train, val, test and evaluation draws never share a generator.
TRAIN, VAL, TEST, EVALUATE = 0, 1, 2, 3


def rng_for(*key: int) -> np.random.Generator:
    """The generator of one image or patch: a pure function of its key (non-negative ints)."""
    return np.random.default_rng([int(k) for k in key])


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Span:
    """A setting given as one number (fixed) or ``[lo, hi]`` (drawn uniformly per image or patch).

    Checked on construction: both ends within ``[low, high]`` and ``lo <= hi``; ``integer`` draws whole
    numbers, both ends included. ``option`` names the setting in the one-line error.
    """

    def __init__(self, value: Any, option: str, low: float, high: float = math.inf, integer: bool = False) -> None:
        ends = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        shown = ends[0] if len(ends) == 1 else ends
        bounds = f"between {low:g} and {high:g}" if math.isfinite(high) else f"at least {low:g}"
        what = "whole numbers" if integer else "numbers"
        if len(ends) not in (1, 2) or not all(_number(e) for e in ends) or (integer and any(float(e) != int(e) for e in ends)):
            raise ConfigError(f"{option}={shown}: must be one of the {what} {bounds}, or a range [lo, hi] of them")
        if not all(low <= e <= high for e in ends):
            raise ConfigError(f"{option}={shown}: must be {bounds}")
        lo, hi = (int(e) if integer else float(e) for e in (ends[0], ends[-1]))
        if lo > hi:
            raise ConfigError(f"{option}={shown}: a range [lo, hi] needs lo <= hi")
        self.lo, self.hi, self.integer, self.option = lo, hi, integer, option

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi

    def draw(self, rng: np.random.Generator) -> float:
        if self.fixed:
            return self.lo
        return int(rng.integers(self.lo, self.hi + 1)) if self.integer else float(rng.uniform(self.lo, self.hi))

    def __str__(self) -> str:
        return f"{self.lo:g}" if self.fixed else f"{self.lo:g}-{self.hi:g}"

    def plain(self) -> float | list[float]:
        """As config writes it: a number, or ``[lo, hi]``."""
        return self.lo if self.fixed else [self.lo, self.hi]
